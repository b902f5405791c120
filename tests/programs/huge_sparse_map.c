/* Maps one page of a sparse 1 TiB file (legal and cheap): the recorder must not read it whole.
 * argv[1]: a directory to make the file in. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
  char path[4096];
  snprintf(path, sizeof path, "%s/rrv_sparse_%d", argc > 1 ? argv[1] : "/tmp", getpid());
  int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
  if (fd < 0 || ftruncate(fd, 1LL << 40) < 0) return 1;
  unlink(path);
  char *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
  printf("%d\n", p == MAP_FAILED ? -1 : p[0]);
  return 0;
}
