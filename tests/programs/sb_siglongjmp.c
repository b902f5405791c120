/* A handler that siglongjmps out of a blocked buffered read, fifty times; the program then
 * goes on making buffered syscalls, and its results show they all still work. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static sigjmp_buf env;
static volatile int jumps;

static void handler(int sig) {
  (void)sig;
  jumps++;
  siglongjmp(env, 1);
}

int main(void) {
  int p[2];
  char c;
  if (pipe(p)) return 1;
  if (write(p[1], "x", 1) != 1 || read(p[0], &c, 1) != 1) return 1;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigaction(SIGALRM, &sa, NULL);
  for (int i = 0; i < 50; i++) {
    if (sigsetjmp(env, 1) == 0) {
      struct itimerval it = {{0, 0}, {0, 2000}};
      setitimer(ITIMER_REAL, &it, NULL);
      if (read(p[0], &c, 1) >= 0) return 2;   /* blocks until the jump */
    }
  }
  /* buffered syscalls go on working: a file read back, stat, time, pipe data */
  char buf[4096], line[128];
  long total = 0;
  for (int i = 0; i < 20; i++) {
    int fd = open("/etc/passwd", O_RDONLY);
    struct stat st;
    fstat(fd, &st);
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) total += n;
    close(fd);
    if (write(p[1], "y", 1) != 1 || read(p[0], &c, 1) != 1 || c != 'y') return 3;
  }
  int n = snprintf(line, sizeof line, "jumps %d, read %ld bytes\n", jumps, total);
  return write(1, line, n) == n ? 0 : 4;
}
