/* A vfork child buffers syscalls into its parent's buffer, and is killed (SIGKILL, by another
 * process) while it spins making more: its last records are never flushed, maybe in the middle
 * of the hook. The parent, resumed, must start from an empty buffer of its own. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
  int fds[2];
  if (pipe(fds)) return 1;
  pid_t killer = fork();
  if (killer == 0) {         /* kills the pid it reads, once that one has run a while */
    pid_t victim;
    if (read(fds[0], &victim, sizeof victim) != sizeof victim) _exit(1);
    usleep(20000);
    _exit(kill(victim, SIGKILL) ? 2 : 0);
  }
  for (int i = 0; i < 3; i++) (void)getppid();   /* its site patched, by the parent */
  pid_t child = vfork();
  if (child == 0) {
    pid_t me = getpid();
    if (write(fds[1], &me, sizeof me) != sizeof me) _exit(3);
    for (;;) (void)getppid();
  }
  int status, killer_status;
  waitpid(child, &status, 0);
  waitpid(killer, &killer_status, 0);
  unsigned long sum = 0;
  for (int i = 0; i < 100; i++) sum += getpid() == child ? 1 : 2;
  printf("child killed by signal %d, killer exited %d, sum %lu\n",
         WIFSIGNALED(status) ? WTERMSIG(status) : -1, WEXITSTATUS(killer_status), sum);
  return 0;
}
