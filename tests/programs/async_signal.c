/* async_signal: an interval timer's SIGALRM interrupts a loop that makes no syscalls and waits
 * for the handler: a handled signal in user code that cannot wait for the next syscall, which
 * needs execution points (recording ends with one line after it held the signal 2 s). */
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
  while (!fired) spins++;
  printf("fired=%d\n", (int)fired);
  return 0;
}
