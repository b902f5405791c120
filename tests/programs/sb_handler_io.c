/* A handler that itself makes buffered syscalls (it writes the byte the main program is
 * blocked reading, and reads the clock), installed with SA_RESTART: each blocked buffered read
 * is interrupted, restarted after the handler, and then returns the handler's byte. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int p[2];
static volatile long handled;

static void handler(int sig) {
  (void)sig;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char b = (char)('a' + handled % 26);
  if (write(p[1], &b, 1) == 1 && getpid() > 0) handled++;
}

int main(void) {
  char c, got[32];
  if (pipe(p)) return 1;
  if (write(p[1], "x", 1) != 1 || read(p[0], &c, 1) != 1) return 1;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &sa, NULL);
  for (int i = 0; i < 20; i++) {
    struct itimerval it = {{0, 0}, {0, 3000}};
    setitimer(ITIMER_REAL, &it, NULL);
    if (read(p[0], &got[i], 1) != 1) return 2;   /* restarted after the handler */
  }
  got[20] = 0;
  printf("handled %ld: %s\n", handled, got);
  return 0;
}
