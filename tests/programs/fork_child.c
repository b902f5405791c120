/* fork_child: forks a child process, which recording does not support yet. */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
  puts("forking");
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) _exit(7);
  int status;
  waitpid(pid, &status, 0);
  printf("child exited %d\n", WEXITSTATUS(status));
  return 0;
}
