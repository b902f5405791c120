/* Blocks SIGUSR2 and ignores SIGUSR1, then executes itself: the new image keeps both, as
 * execve does (a handled signal would go back to its default, and the alternate stack it sets
 * is cleared, all but its SS_AUTODISARM flag, which the new image's checkpoints hold). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)
#endif

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "after-exec") == 0) {
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    struct sigaction usr1, term;
    sigaction(SIGUSR1, NULL, &usr1);
    sigaction(SIGTERM, NULL, &term);
    printf("after exec: SIGUSR2 blocked %d, SIGUSR1 ignored %d, SIGTERM default %d\n",
           sigismember(&cur, SIGUSR2), usr1.sa_handler == SIG_IGN, term.sa_handler == SIG_DFL);
    return 0;
  }
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  sigprocmask(SIG_BLOCK, &usr2, NULL);
  signal(SIGUSR1, SIG_IGN);
  signal(SIGTERM, (void (*)(int))main);   /* a handler: reset by exec */
  static char altstack[65536];
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = SS_AUTODISARM};
  sigaltstack(&ss, NULL);                  /* cleared by exec, but for SS_AUTODISARM */
  execl("/proc/self/exe", argv[0], "after-exec", (char *)NULL);
  return 9;
}
