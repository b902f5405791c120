/* Maps parts of a sparse 1 TiB file (legal and cheap): the recorder must store only the mapped
 * ranges, holes unread, and replay must show the same bytes, and a fault past the file's end.
 * argv[1]: a directory to make the file in. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

static sigjmp_buf env;
static void on_bus(int sig) { siglongjmp(env, sig); }

int main(int argc, char **argv) {
  char path[4096];
  snprintf(path, sizeof path, "%s/rrv_sparse_%d", argc > 1 ? argv[1] : "/tmp", getpid());
  int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
  const long long tib = 1LL << 40, gib = 1LL << 30;
  if (fd < 0 || ftruncate(fd, tib) < 0) return 1;
  unlink(path);
  pwrite(fd, "in the middle", 13, gib + 100);
  pwrite(fd, "at the end", 10, tib - 10);
  char *mid = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, fd, gib);
  char *last = mmap(NULL, 8192, PROT_READ, MAP_SHARED, fd, tib - 4096);
  if (mid == MAP_FAILED || last == MAP_FAILED) return 2;
  struct sigaction sa = {0};
  sa.sa_handler = on_bus;
  sigaction(SIGBUS, &sa, NULL);
  int faulted = sigsetjmp(env, 1);
  if (!faulted) (void)*(volatile char *)(last + 4096);   /* past the end of the file */
  printf("%.13s | %d | %.10s | past the end: %s\n", mid + 100, mid[5000], last + 4086,
         faulted == SIGBUS ? "SIGBUS" : "no fault");
  return 0;
}
