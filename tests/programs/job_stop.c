/* Stops itself with SIGSTOP (as Ctrl-Z or `kill -STOP` would) and goes on when SIGCONT comes:
 * the test sends it. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

int main(void) {
  printf("stopping\n");
  fflush(stdout);
  raise(SIGSTOP);
  printf("continued\n");
  return 0;
}
