/* signal_parent: a child sends SIGUSR1 to its parent twice. First while the parent is blocked
 * in read() on a pipe, with an SA_RESTART handler: the handler runs once and the read is
 * restarted and succeeds. Then while the parent runs user code (a loop without syscalls): the
 * handler runs by the parent's next syscall. */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc_stat.h"

static volatile sig_atomic_t handled;

static void on_usr1(int sig) { (void)sig; handled++; }

static void pause_ms(long ms) {
  struct timespec t = {0, ms * 1000 * 1000};
  nanosleep(&t, NULL);
}

int main(void) {
  struct sigaction sa = {0};
  sa.sa_handler = on_usr1;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);
  int to_parent[2], to_child[2];
  if (pipe(to_parent) || pipe(to_child)) return 1;
  pid_t pid = fork();
  if (pid == 0) {
    char c;
    long ticks, start;
    while (proc_stat(getppid(), NULL) != 'S') pause_ms(10);    /* blocked in read() */
    kill(getppid(), SIGUSR1);
    pause_ms(100);
    write(to_parent[1], "payload", 7);
    read(to_child[0], &c, 1);         /* the parent goes into its loop */
    proc_stat(getppid(), &start);
    do {                              /* until it has spun for 30 ms of user time */
      pause_ms(10);
      proc_stat(getppid(), &ticks);
    } while (ticks >= 0 && ticks < start + 3);
    kill(getppid(), SIGUSR1);
    _exit(0);
  }
  char buf[16] = {0};
  ssize_t n = read(to_parent[0], buf, sizeof buf - 1);
  int in_read = handled;
  write(to_child[1], "s", 1);
  /* Natively the handler ends this loop; recorded, the signal waits for the next syscall
   * and the loop runs to its end (about 0.3 s; the child sends it after 30 ms). */
  for (volatile unsigned long i = 0; i < 300000000 && handled == 1; i++) {}
  getpid();                           /* a syscall: the signal is handled by its end */
  int status;
  waitpid(pid, &status, 0);
  printf("handler ran %d time(s) in read, which returned %zd: %s; %d time(s) in all; child "
         "exited %d\n", in_read, n, buf, (int)handled, WEXITSTATUS(status));
  return in_read == 1 && n == 7 && handled == 2 ? 0 : 1;
}
