/* waitid_child: forks a child that exits 3 and waits for it with waitid(P_PID), which reports
 * the child's end in a siginfo (the wait-status cross-process check reads it there). */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
  pid_t pid = fork();
  if (pid == 0) _exit(3);
  siginfo_t si;
  if (waitid(P_PID, pid, &si, WEXITED) != 0) return 1;
  printf("code %s, status %d\n", si.si_code == CLD_EXITED ? "exited" : "other", si.si_status);
  return 0;
}
