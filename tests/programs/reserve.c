/* A process that reserves 256 MiB of anonymous memory (argv[2] MiB, at least 128) and touches
 * little of it, as runtimes reserve their heaps: a page written here and there, and one page
 * filled by a read() of argv[1] (default /etc/passwd) that the program never looks at again.
 * Then getppid() calls, for checkpoints to come. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
  unsigned long mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 256;
  unsigned long reserved = (mib < 128 ? 128 : mib) << 20;
  char *heap = mmap(NULL, reserved, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (heap == MAP_FAILED) return 1;
  int fd = open(argc > 1 ? argv[1] : "/etc/passwd", O_RDONLY);
  if (fd < 0 || read(fd, heap + (100ul << 20), 4096) < 0) return 2;
  close(fd);
  for (int i = 0; i < 3000; i++) {
    heap[(i % 16) * 4096] = (char)i;
    getppid();
  }
  printf("reserved %lu MiB, touched 17 pages\n", reserved >> 20);
  return 0;
}
