/* Buffered syscalls made with every signal blocked and a SIGTRAP handler installed (as
 * posix_spawn's child blocks them all), then with SIGTRAP ignored from the middle of a run of
 * them on: replay's syscall breakpoint must change neither (its forced SIGTRAP would unblock
 * SIGTRAP and reset its action). Traced uname calls between them give checkpoints, which
 * compare the signal state, a place to fall. */
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
  /* Then SIGTRAP unblocked, and ignored from the middle of a run of buffered syscalls on */
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  struct sigaction ign = {0};
  ign.sa_handler = SIG_IGN;
  for (int i = 0; i < 200; i++) {
    struct stat st;
    sum += getpid() > 0;
    if (i % 40 == 20) sigaction(SIGTRAP, i % 80 == 20 ? &ign : &sa, NULL);
    if (fstat(1, &st) == 0) sum++;
    if (i % 40 == 39) {
      struct utsname u;
      uname(&u);
    }
  }
  sigaction(SIGTRAP, NULL, &old);
  printf("sum %lu, SIGTRAP ignored %d\n", sum, old.sa_handler == SIG_IGN);
  return 0;
}
