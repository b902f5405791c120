// Exercises the rdtsc and rdtscp instructions (values are nondeterministic).
#include <stdio.h>

int main(void)
{
    unsigned long long v[16];
    unsigned int aux[8];
    for (int i = 0; i < 8; i++) {
        v[2 * i] = __builtin_ia32_rdtsc();
        v[2 * i + 1] = __builtin_ia32_rdtscp(&aux[i]);
    }
    int increasing = 1;
    for (int i = 1; i < 16; i++)
        if (v[i] <= v[i - 1])
            increasing = 0;
    printf(increasing ? "tsc increasing\n" : "tsc NOT increasing\n");
    for (int i = 0; i < 16; i++)
        printf("%s %llu\n", (i & 1) ? "rdtscp" : "rdtsc", v[i]);
    printf("aux %u\n", aux[7]);
    return 0;
}
