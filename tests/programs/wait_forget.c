/* wait_forget: forks a child that exits 7, waits for it, and keeps neither the pid fork
 * returned nor the status wait got: what they were shows in no later event of the parent, so
 * only the cross-process checks can tell a trace that lies about them (test_crossprocess.py). */
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
  volatile pid_t pid = fork();
  if (pid == 0) _exit(7);
  pid = 0;
  volatile int status = 0;
  wait((int *)&status);
  status = 0;
  return 0;
}
