// Exercises the rdrand instruction, which cannot be trapped (nondeterministic by design).
#include <stdio.h>

static unsigned long long rdrand64(void)
{
    unsigned long long v;
    unsigned char ok;
    do {
        __asm__ volatile("rdrand %0; setc %1" : "=r"(v), "=qm"(ok) : : "cc");
    } while (!ok);
    return v;
}

int main(void)
{
    for (int i = 0; i < 4; i++)
        printf("rdrand %016llx\n", rdrand64());
    return 0;
}
