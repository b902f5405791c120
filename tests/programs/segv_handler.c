// Exercises a synchronous SIGSEGV with an SA_SIGINFO handler that recovers via siglongjmp.
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static sigjmp_buf env;
static volatile sig_atomic_t caught;
static void *volatile last_addr;

static void handler(int sig, siginfo_t *si, void *ctx)
{
    (void)sig; (void)ctx;
    caught++;
    last_addr = si->si_addr;
    siglongjmp(env, 1);
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0) { perror("sigaction"); return 1; }
    for (int i = 0; i < 3; i++) {
        if (sigsetjmp(env, 1) == 0) {
            *(volatile int *)(16 + 8 * (unsigned long)i) = 1;
            printf("no fault?!\n");
            return 1;
        }
        printf("caught %d si_addr=%p\n", (int)caught, last_addr);
    }
    printf("done\n");
    return 0;
}
