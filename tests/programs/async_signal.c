/* async_signal: an interval timer's SIGALRM interrupts a loop that makes no syscalls: an
 * asynchronous signal in user code, which recording does not support yet. */
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>

static volatile sig_atomic_t fired;
static void on_alarm(int sig) { (void)sig; fired = 1; }

int main(void) {
  signal(SIGALRM, on_alarm);
  struct itimerval it = {{0, 0}, {0, 20000}};
  setitimer(ITIMER_REAL, &it, NULL);
  volatile unsigned long spins = 0;
  while (!fired && spins < 4000000000ul) spins++;
  printf("fired=%d\n", (int)fired);
  return 0;
}
