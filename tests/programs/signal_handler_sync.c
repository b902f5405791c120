// Exercises synchronous signals: SIGFPE (int div by zero), SIGTRAP (int3), raise(SIGUSR1).
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static sigjmp_buf env;
static volatile sig_atomic_t nfpe, ntrap, nusr1;

static void on_fpe(int sig, siginfo_t *si, void *ctx)
{
    (void)sig; (void)ctx;
    nfpe++;
    printf("SIGFPE si_code=%d%s\n", si->si_code, si->si_code == FPE_INTDIV ? " (FPE_INTDIV)" : "");
    siglongjmp(env, 1);
}

static void on_trap(int sig, siginfo_t *si, void *ctx)
{
    (void)sig; (void)si; (void)ctx;
    ntrap++;
}

static void on_usr1(int sig)
{
    (void)sig;
    nusr1++;
}

static void install(int sig, void (*fn)(int, siginfo_t *, void *))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

int main(void)
{
    volatile int zero = 0, num = 42;
    install(SIGFPE, on_fpe);
    if (sigsetjmp(env, 1) == 0) {
        int q = num / zero;
        printf("no SIGFPE?! q=%d\n", q);
        return 1;
    }
    install(SIGTRAP, on_trap);
    for (int i = 0; i < 3; i++)
        __asm__ volatile("int3");
    signal(SIGUSR1, on_usr1);
    raise(SIGUSR1);
    raise(SIGUSR1);
    printf("fpe=%d trap=%d usr1=%d\n", (int)nfpe, (int)ntrap, (int)nusr1);
    return 0;
}
