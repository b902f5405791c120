/* Two children at once, each exec'ing this program again ("busy"): each prints the CPUs it
 * may run on (/proc/self/status) and computes in user code for a while, so that when the
 * second execs the first is still at work. With a tracer thread per CPU the second moves to
 * the other CPU (docs/checks.md §13.5). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void busy(const char *name) {
  char line[256];
  FILE *f = fopen("/proc/self/status", "r");
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "Cpus_allowed_list:", 18)) printf("%s %s", name, line + 18);
  if (f) fclose(f);
  fflush(stdout);
  volatile unsigned long x = 1;
  for (unsigned long i = 0; i < 150000000ul; i++) x = x * 6364136223846793005ul + i;
  exit((int)(x & 1));
}

int main(int argc, char **argv) {
  if (argc > 1) busy(argv[1]);
  pid_t kids[2];
  for (int k = 0; k < 2; k++) {
    kids[k] = fork();
    if (kids[k] == 0) {
      execl("/proc/self/exe", argv[0], k ? "second" : "first", (char *)NULL);
      _exit(127);
    }
  }
  int bad = 0;
  for (int k = 0; k < 2; k++) {
    int status;
    if (waitpid(kids[k], &status, 0) != kids[k] || !WIFEXITED(status) ||
        WEXITSTATUS(status) > 1)
      bad = 1;
  }
  return bad;
}
