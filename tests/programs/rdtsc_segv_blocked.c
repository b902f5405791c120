/* rdtsc while SIGSEGV is blocked, and while it is ignored: rdtsc itself works for the program,
 * and afterwards its SIGSEGV state is as it set it (the recorder traps rdtsc with a SIGSEGV the
 * kernel forces: that unblocks it and resets its handler, which must not leak). Also from
 * inside a SIGSEGV handler, where SIGSEGV is blocked, and with the handler kept. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <x86intrin.h>

static void on_segv(int sig) {
  unsigned long long t = __rdtsc();     /* SIGSEGV is blocked in its own handler */
  struct sigaction now;
  sigaction(SIGSEGV, NULL, &now);
  sigset_t cur;
  sigprocmask(SIG_BLOCK, NULL, &cur);
  printf("in handler: rdtsc %s, handler kept %d, SIGSEGV blocked %d\n", t ? "ok" : "zero",
         now.sa_handler == on_segv, sigismember(&cur, SIGSEGV));
}

int main(void) {
  sigset_t segv;
  sigemptyset(&segv);
  sigaddset(&segv, SIGSEGV);
  sigprocmask(SIG_BLOCK, &segv, NULL);
  unsigned long long t1 = __rdtsc();
  sigset_t cur;
  sigprocmask(SIG_BLOCK, NULL, &cur);
  printf("blocked: rdtsc %s, SIGSEGV still blocked %d\n", t1 ? "ok" : "zero", sigismember(&cur, SIGSEGV));
  sigprocmask(SIG_UNBLOCK, &segv, NULL);
  signal(SIGSEGV, SIG_IGN);
  unsigned long long t2 = __rdtsc();
  struct sigaction now;
  sigaction(SIGSEGV, NULL, &now);
  printf("ignored: rdtsc %s, still ignored %d\n", t2 ? "ok" : "zero", now.sa_handler == SIG_IGN);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_segv;
  sigaction(SIGSEGV, &sa, NULL);
  raise(SIGSEGV);
  return 0;
}
