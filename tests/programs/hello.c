// Exercises the minimal path: printf to stdout and a normal exit 0.
#include <stdio.h>

int main(void)
{
    printf("hello, world\n");
    return 0;
}
