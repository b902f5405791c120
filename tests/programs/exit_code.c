// Exercises a nonzero exit status (exits with 3).
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    printf("exiting with 3\n");
    exit(3);
}
