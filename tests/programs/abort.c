// Exercises death by signal: abort() raises SIGABRT after flushing a line.
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    printf("about to abort\n");
    fflush(stdout);
    abort();
}
