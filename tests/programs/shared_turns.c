/* shared_turns: a parent and its child take turns on a MAP_SHARED|MAP_ANONYMOUS page, handing
 * the turn over through pipes: each reads what the other wrote there, adds to it, and writes
 * its own. Recorded, the two run one at a time and each one's events carry what the other
 * changed in the page while it waited in read. argv[1] (default 0): before each turn, each
 * makes that many runs of syscalls that wait on nothing but the kernel (fstat, clock_gettime,
 * getpid): more than the 64 a process that shares memory may buffer between two ptrace
 * stops. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void work(int runs) {
  struct stat st;
  struct timespec ts;
  for (int i = 0; i < runs; i++) {
    fstat(0, &st);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    getpid();
  }
}

int main(int argc, char **argv) {
  int runs = argc > 1 ? atoi(argv[1]) : 0;
  volatile long *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                             -1, 0);
  if (page == MAP_FAILED) return 1;
  int to_child[2], to_parent[2];
  if (pipe(to_child) || pipe(to_parent)) return 1;
  char token = 't';
  pid_t pid = fork();
  if (pid == 0) {
    for (int i = 0; i < 20; i++) {
      if (read(to_child[0], &token, 1) != 1) _exit(2);
      work(runs);
      page[0] = page[0] * 3 + 1;      /* what the parent left, changed */
      page[1 + i % 100] = page[0];
      if (write(to_parent[1], &token, 1) != 1) _exit(3);
    }
    _exit(0);
  }
  long sum = 0;
  for (int i = 0; i < 20; i++) {
    work(runs);
    page[0] += i;
    if (write(to_child[1], &token, 1) != 1) return 4;
    if (read(to_parent[0], &token, 1) != 1) return 5;
    sum += page[0] % 1000;            /* what the child wrote */
  }
  int status;
  waitpid(pid, &status, 0);
  printf("page %ld sum %ld child %d\n", page[0], sum, WEXITSTATUS(status));
  return 0;
}
