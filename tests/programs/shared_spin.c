/* shared_spin: a child spins, making no syscall, until its parent writes a MAP_SHARED page.
 * Recorded, the two share memory and run user code one at a time; switching from the
 * spinning child needs preemption (execution points), so the recording ends with one line
 * naming both processes and the region, never a hang. */
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(void) {
  volatile int *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                            -1, 0);
  if (page == MAP_FAILED) return 1;
  pid_t pid = fork();
  if (pid == 0) {
    while (!page[0]) {}
    _exit(0);
  }
  struct timespec ts = {0, 50000000};
  nanosleep(&ts, NULL);
  page[0] = 1;
  int status;
  waitpid(pid, &status, 0);
  puts("done");
  return 0;
}
