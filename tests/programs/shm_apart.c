/* shm_apart: two children, each exec'ing this program again, compute for a while and then map
 * one /dev/shm object shared, each on its own: the second, exec'ing while the first is at
 * work, is moved to another CPU's tracer thread (docs/checks.md §13.5), and the sharing must
 * be refused all the same, whichever threads trace the two. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static void mapper(const char *name) {
  volatile unsigned long x = 1;
  for (unsigned long i = 0; i < 60000000ul; i++) x = x * 6364136223846793005ul + i;
  int fd = shm_open(name, O_RDWR | O_CREAT, 0600);
  if (fd < 0 || ftruncate(fd, 4096) < 0) exit(2);
  int *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) exit(2);
  p[0] += 1;
  usleep(300000);
  exit(0);
}

int main(int argc, char **argv) {
  if (argc > 1) mapper(argv[1]);
  char name[64];
  snprintf(name, sizeof name, "/rrverify-apart-%d", (int)getpid());
  pid_t kids[2];
  for (int k = 0; k < 2; k++)
    if ((kids[k] = fork()) == 0) {
      execl("/proc/self/exe", argv[0], name, (char *)NULL);
      _exit(127);
    }
  for (int k = 0; k < 2; k++) waitpid(kids[k], NULL, 0);
  shm_unlink(name);
  return 0;
}
