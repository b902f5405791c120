/* shared_anon: a MAP_SHARED|MAP_ANONYMOUS page shared with a fork child: the child adds to it
 * and exits while the parent waits for it, then the parent adds to what the child left. */
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
  volatile int *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                              -1, 0);
  if (shared == MAP_FAILED) return 1;
  *shared = 1;
  printf("mapped\n");
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    *shared += 10;
    _exit(0);
  }
  waitpid(pid, NULL, 0);
  *shared += 100;
  printf("shared value %d\n", *shared);
  return 0;
}
