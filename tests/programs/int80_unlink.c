/* A 64-bit program that makes a 32-bit syscall through `int $0x80`: i386's unlink (10) of
 * argv[1]. On x86-64, 10 is mprotect: a tracer that ignores seccomp_data.arch misreads it.
 * With argv[2] == "if-pid-1" it does so only when getpid() says 1 (never, unless a trace
 * is edited to say so). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
  /* int $0x80 takes 32-bit pointers: put the path in the low 4 GiB. */
  char *path = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT,
                    -1, 0);
  if (path == MAP_FAILED) return 3;
  snprintf(path, 4096, "%s", argc > 1 ? argv[1] : "/nonexistent");
  long ret = 1;
  printf("before\n");
  fflush(stdout);
  if (argc < 3 || strcmp(argv[2], "if-pid-1") != 0 || getpid() == 1)
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(10L), "b"((long)path) : "memory");
  printf("int $0x80 unlink returned %ld\n", ret);
  return 0;
}
