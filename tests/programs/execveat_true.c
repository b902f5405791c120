/* execveat_true: children exec through a file descriptor: fexecve of /bin/true (execveat with
 * AT_EMPTY_PATH) and execveat of "false" relative to a descriptor of /bin. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int run(int how) {
  pid_t pid = fork();
  if (pid == 0) {
    if (how == 0) {
      char *argv[] = {"true", NULL};
      int fd = open("/bin/true", O_RDONLY | O_CLOEXEC);
      fexecve(fd, argv, environ);
    } else {
      char *argv[] = {"false", NULL};
      int dir = open("/bin", O_RDONLY | O_DIRECTORY);
      syscall(SYS_execveat, dir, "false", argv, environ, 0);
    }
    _exit(99);
  }
  int status;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int main(void) {
  printf("fexecve /bin/true: exited %d\n", run(0));
  printf("execveat /bin + false: exited %d\n", run(1));
  return 0;
}
