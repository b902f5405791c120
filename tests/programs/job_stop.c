/* Stops itself with SIGSTOP (as Ctrl-Z or `kill -STOP` would) and goes on when SIGCONT comes,
 * then sleeps a second, during which the test stops and continues it again: the kernel then
 * continues the sleep with restart_syscall. The test sends the signals. */
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void) {
  printf("stopping\n");
  fflush(stdout);
  raise(SIGSTOP);
  printf("continued\n");
  fflush(stdout);
  struct timespec ts = {1, 0};
  int r = nanosleep(&ts, NULL);
  printf("slept: %d\n", r);
  return 0;
}
