/* posix_spawn: glibc spawns with clone(CLONE_VM|CLONE_VFORK); a failing exec's error comes back
 * to the parent through the memory the child shared with it (posix_spawn returns ENOENT). */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

int main(void) {
  pid_t pid;
  char *ok_argv[] = {"/bin/echo", "spawned", "echo", NULL};
  fflush(stdout);
  int rc = posix_spawn(&pid, ok_argv[0], NULL, NULL, ok_argv, environ);
  int status = -1;
  if (rc == 0) waitpid(pid, &status, 0);
  printf("spawn /bin/echo: %d, child exited %d\n", rc, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  char *bad_argv[] = {"/nonexistent/rrverify-no-such-program", NULL};
  fflush(stdout);
  rc = posix_spawn(&pid, bad_argv[0], NULL, NULL, bad_argv, environ);
  printf("spawn of a missing program: %d (%s)\n", rc, strerror(rc));
  return rc == ENOENT ? 0 : 1;
}
