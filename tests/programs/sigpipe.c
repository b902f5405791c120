/* sigpipe: SIGPIPE from writing to a pipe with no reader arrives at the write's exit: first to
 * a handler (the write fails with EPIPE), then with the default action, which kills. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t caught;
static void on_pipe(int sig) { (void)sig; caught++; }

int main(void) {
  int p[2];
  if (pipe(p) < 0) return 1;
  close(p[0]);
  signal(SIGPIPE, on_pipe);
  ssize_t n = write(p[1], "x", 1);
  printf("write: %zd (%s), handler ran %d time(s)\n", n, n < 0 ? strerror(errno) : "ok",
         (int)caught);
  fflush(stdout);
  signal(SIGPIPE, SIG_DFL);
  write(p[1], "y", 1);
  puts("not reached");
  return 0;
}
