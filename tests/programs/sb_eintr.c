/* A timer's signal ends a blocked buffered read with EINTR (a handler without SA_RESTART), as
 * it would natively: programs time reads out this way. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static volatile int handled;
static void on_alarm(int sig) { (void)sig; handled++; }

int main(void) {
  int p[2];
  char c;
  if (pipe(p) || write(p[1], "x", 1) != 1 || read(p[0], &c, 1) != 1) return 1;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, NULL);
  for (int i = 0; i < 5; i++) {
    struct itimerval it = {{0, 0}, {0, 5000}};
    setitimer(ITIMER_REAL, &it, NULL);
    ssize_t n = read(p[0], &c, 1);
    printf("read: %zd (%s), handler ran %d time(s)\n", n, n < 0 ? strerror(errno) : "ok", handled);
  }
  return 0;
}
