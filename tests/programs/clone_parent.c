/* clone_parent: the first process starts a sibling (clone with CLONE_PARENT: its parent is
 * the first process's parent, the recorder), which execs this program again and computes
 * while the first one computes too. A tracer thread is the sibling's real parent, so it never
 * moves to another thread (docs/checks.md §13.5), whose waits would not see it. */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static void compute(void) {
  volatile unsigned long x = 1;
  for (unsigned long i = 0; i < 80000000ul; i++) x = x * 6364136223846793005ul + i;
}

int main(int argc, char **argv) {
  if (argc > 1) {
    compute();
    printf("sibling done\n");
    return 0;
  }
  long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
  if (pid == 0) {
    execl("/proc/self/exe", argv[0], "sibling", (char *)NULL);
    _exit(127);
  }
  compute();
  printf("first done\n");
  return pid < 0;
}
