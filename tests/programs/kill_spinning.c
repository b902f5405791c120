/* kill_spinning: a parent kills a child stuck in a loop without syscalls, with SIGKILL and
 * then with SIGTERM (default action), waits for it and prints the signal that ended it. */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc_stat.h"

static int kill_spinning_child(int sig) {
  int fds[2];
  if (pipe(fds)) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    write(fds[1], "s", 1);            /* spinning from here on */
    volatile unsigned long n = 0;
    for (;;) n++;
  }
  char c;
  read(fds[0], &c, 1);
  close(fds[0]);
  close(fds[1]);
  /* The child has spun for 30 ms of user time: it is in its loop, past its write. */
  for (long ticks = 0; ticks >= 0 && ticks < 3; proc_stat(pid, &ticks)) {
    struct timespec pause = {0, 10 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  kill(pid, sig);
  int status;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) ? WTERMSIG(status) : -1;
}

int main(void) {
  printf("SIGKILL: child killed by signal %d\n", kill_spinning_child(SIGKILL));
  printf("SIGTERM: child killed by signal %d\n", kill_spinning_child(SIGTERM));
  return 0;
}
