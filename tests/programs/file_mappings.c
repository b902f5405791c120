/* Mappings that must act in replay as they did: a file mapping touched past the file's end
 * (SIGBUS, handled), MADV_DONTNEED on a written private file mapping (back to the file), a
 * mapping grown by mremap, a shared read-only mapping seeing the file, a shared writable one
 * whose writes the file and the other mapping see, pwrite and write to the file that its
 * shared mappings see, and /dev/zero. argv[1]: a directory to make the file in. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static sigjmp_buf env;
static void on_bus(int sig) { siglongjmp(env, sig); }

int main(int argc, char **argv) {
  char path[4096];
  snprintf(path, sizeof path, "%s/rrv_mapped_%d", argc > 1 ? argv[1] : "/tmp", getpid());
  int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
  if (fd < 0) return 1;
  char text[5000];
  for (int i = 0; i < (int)sizeof text; i++) text[i] = 'a' + i % 26;
  if (write(fd, text, sizeof text) != (ssize_t)sizeof text) return 2;
  /* Two pages of file, mapped as three: the third page lies past the end. */
  char *p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) return 3;
  struct sigaction sa = {0};
  sa.sa_handler = on_bus;
  sigaction(SIGBUS, &sa, NULL);
  int got = sigsetjmp(env, 1);
  if (got == 0) p[2 * 4096] = 1;
  printf("past the end: %s\n", got == SIGBUS ? "SIGBUS" : "no fault");
  p[10] = 'Z';
  madvise(p, 4096, MADV_DONTNEED);
  printf("after MADV_DONTNEED: %c (file %c)\n", p[10], text[10]);
  char *q = mremap(p, 3 * 4096, 6 * 4096, MREMAP_MAYMOVE);
  printf("mremap: %s, %c\n", q == MAP_FAILED ? "failed" : "ok", q[4999]);
  char *s = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
  printf("shared: %.5s\n", s);
  char *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  w[1] = 'W';
  msync(w, 4096, MS_SYNC);
  char back[6] = "";
  pread(fd, back, 5, 0);
  printf("shared writable: the file reads %s, the other shared mapping shows %.5s\n", back, s);
  pwrite(fd, "P", 1, 2);
  lseek(fd, 3, SEEK_SET);
  write(fd, "Q", 1);
  printf("after pwrite and write to the file, its shared mappings show %.5s\n", s);
  int z = open("/dev/zero", O_RDONLY);
  char *zp = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE, z, 0);
  zp[12345] = 7;
  printf("/dev/zero: %d %d\n", zp[0], zp[12345]);
  unlink(path);
  return 0;
}
