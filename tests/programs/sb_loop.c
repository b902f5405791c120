/* A loop of the syscalls programs make most: pread, write, fstat, clock_gettime (the vDSO's),
 * getpid. With the preload each is buffered, without a ptrace stop. argv[1]: iterations
 * (default 2000); argv[2]: a file to read (default /etc/passwd). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 2000;
  const char *path = argc > 2 ? argv[2] : "/etc/passwd";
  int fd = open(path, O_RDONLY);
  int out = open("/dev/null", O_WRONLY);
  if (fd < 0 || out < 0) return 1;
  char buf[256];
  unsigned long sum = 0;
  for (long i = 0; i < n; i++) {
    struct stat st;
    struct timespec ts;
    ssize_t got = pread(fd, buf, sizeof buf, (i * 64) % 1024);
    if (got <= 0 || write(out, buf, got) != got || fstat(fd, &st)) return 2;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    sum += (unsigned char)buf[i % got] + st.st_size + (getpid() > 0);
  }
  printf("%ld iterations, sum %lu\n", n, sum);
  return 0;
}
