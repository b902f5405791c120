/* Buffered syscalls made with every signal blocked and a SIGTRAP handler installed (as
 * posix_spawn's child blocks them all): replay's syscall breakpoint must not change either
 * (its forced SIGTRAP would unblock SIGTRAP and reset the handler). Traced uname calls between
 * them give checkpoints, which compare the signal state, a place to fall. */
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

static void on_trap(int sig) { (void)sig; }

int main(void) {
  struct sigaction sa = {0};
  sa.sa_handler = on_trap;
  sigaction(SIGTRAP, &sa, NULL);
  sigset_t all, now;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, NULL);
  unsigned long sum = 0;
  for (int i = 0; i < 400; i++) {
    struct stat st;
    sum += getpid() > 0;
    if (fstat(1, &st) == 0) sum++;
    if (i % 40 == 0) {
      struct utsname u;
      uname(&u);
    }
  }
  struct sigaction old;
  sigaction(SIGTRAP, NULL, &old);
  sigprocmask(SIG_BLOCK, NULL, &now);
  printf("sum %lu, handler kept %d, SIGTRAP blocked %d\n", sum, old.sa_handler == on_trap,
         sigismember(&now, SIGTRAP));
  return 0;
}
