/* shared_buffered: shared_turns with work between the turns: a parent and its child share a
 * MAP_SHARED|MAP_ANONYMOUS page and take turns through pipes, and between two turns each makes
 * a run of syscalls that wait on nothing but the kernel (fstat, clock_gettime, getpid),
 * longer than the 64 a process that shares memory may buffer between two ptrace stops. */
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 10
#define RUN 150

static long work(void) {
  struct stat st;
  struct timespec ts;
  long sum = 0;
  for (int i = 0; i < RUN; i++) {
    if (fstat(0, &st) == 0) sum += 1;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    sum += getpid() > 0;
  }
  return sum;
}

int main(void) {
  volatile long *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                             -1, 0);
  if (page == MAP_FAILED) return 1;
  int to_child[2], to_parent[2];
  if (pipe(to_child) || pipe(to_parent)) return 1;
  char token = 't';
  pid_t pid = fork();
  if (pid == 0) {
    for (int i = 0; i < ROUNDS; i++) {
      if (read(to_child[0], &token, 1) != 1) _exit(2);
      page[0] = page[0] * 3 + work();
      if (write(to_parent[1], &token, 1) != 1) _exit(3);
    }
    _exit(0);
  }
  long sum = 0;
  for (int i = 0; i < ROUNDS; i++) {
    page[0] += work();
    if (write(to_child[1], &token, 1) != 1) return 4;
    if (read(to_parent[0], &token, 1) != 1) return 5;
    sum += page[0] % 1000;
  }
  int status;
  waitpid(pid, &status, 0);
  printf("page %ld sum %ld child %d\n", page[0], sum, WEXITSTATUS(status));
  return 0;
}
