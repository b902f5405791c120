// Exercises vDSO time calls: clock_gettime(REALTIME/MONOTONIC), gettimeofday, time.
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

int main(void)
{
    struct timespec rt = {0}, mono = {0}, prev = {0};
    struct timeval tv = {0};
    time_t t = 0;
    int backwards = 0;
    for (int i = 0; i < 1000; i++) {
        clock_gettime(CLOCK_REALTIME, &rt);
        clock_gettime(CLOCK_MONOTONIC, &mono);
        gettimeofday(&tv, NULL);
        t = time(NULL);
        if (mono.tv_sec < prev.tv_sec ||
            (mono.tv_sec == prev.tv_sec && mono.tv_nsec < prev.tv_nsec))
            backwards++;
        prev = mono;
    }
    printf(backwards ? "monotonic BACKWARDS\n" : "monotonic ok\n");
    printf("realtime %lld.%09ld\n", (long long)rt.tv_sec, rt.tv_nsec);
    printf("monotonic %lld.%09ld\n", (long long)mono.tv_sec, mono.tv_nsec);
    printf("gettimeofday %lld.%06ld\n", (long long)tv.tv_sec, (long)tv.tv_usec);
    printf("time %lld\n", (long long)t);
    return 0;
}
