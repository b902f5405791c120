/* shm_two_mappers: a parent and its child each map one /dev/shm object shared, on their own
 * (after the fork): memory shared that way is refused with one line (only what a fork shares
 * is run one process at a time). */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
  char name[64];
  snprintf(name, sizeof name, "/rrverify-test-%d", (int)getpid());
  pid_t pid = fork();
  int fd = shm_open(name, O_RDWR | O_CREAT, 0600);
  ftruncate(fd, 4096);
  int *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (pid == 0) { usleep(100000); p[0] = 5; _exit(0); }
  usleep(200000);
  printf("%d\n", p[0]);
  waitpid(pid, 0, 0);
  shm_unlink(name);
  return 0;
}
