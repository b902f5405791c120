/* futex in one process: wakes with no waiter, a wait whose word has changed (EAGAIN), waits
 * with no timeout that a timer's signal ends (EINTR without SA_RESTART; with SA_RESTART the
 * wait restarts, and returns EAGAIN because the handler changed the word), and a wait with a
 * timeout (ETIMEDOUT, which stays traced). Each result is printed: replay must give the same. */
#include <errno.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile int word;
static volatile int alarms;

static long futex(volatile int *addr, int op, int val, const struct timespec *timeout) {
  long r = syscall(SYS_futex, addr, op, val, timeout, NULL, FUTEX_BITSET_MATCH_ANY);
  return r < 0 ? -errno : r;
}

static void on_alarm(int sig) {
  (void)sig;
  alarms++;
  word++;       /* a restarted wait finds its word changed */
}

static void arm(int restart) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sa.sa_flags = restart ? SA_RESTART : 0;
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval it = {{0, 0}, {0, 20000}};
  setitimer(ITIMER_REAL, &it, NULL);
}

int main(void) {
  long woken = 0, again = 0;
  for (int i = 0; i < 200; i++) {
    woken += futex(&word, FUTEX_WAKE_PRIVATE, 1, NULL);
    again += futex(&word, FUTEX_WAIT_PRIVATE, word + 1, NULL) == -EAGAIN;
  }
  printf("wakes woke %ld, %ld waits found the word changed\n", woken, again);
  arm(0);
  long r = futex(&word, FUTEX_WAIT_PRIVATE, word, NULL);
  printf("wait without SA_RESTART: %s after %d alarm(s)\n", r == -EINTR ? "EINTR" : "?", alarms);
  arm(1);
  r = futex(&word, FUTEX_WAIT_BITSET_PRIVATE, word, NULL);
  printf("wait with SA_RESTART: %s after %d alarm(s)\n", r == -EAGAIN ? "EAGAIN" : "?", alarms);
  struct timespec ms = {0, 1000000};
  r = futex(&word, FUTEX_WAIT_PRIVATE, word, &ms);
  printf("wait with a timeout: %s\n", r == -ETIMEDOUT ? "ETIMEDOUT" : "?");
  return 0;
}
