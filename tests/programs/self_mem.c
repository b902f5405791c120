/* Changes its own memory through /proc/self/mem (pwrite and write at a position) and through
 * process_vm_writev on itself, and reads it back with process_vm_readv: effects that no
 * syscall result carries. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static char target[64] = "original contents of the target buffer";
static const char *const ro_text = "read-only text";

int main(void) {
  int fd = open("/proc/self/mem", O_RDWR);
  if (fd < 0) return 1;
  if (pwrite(fd, "PWRITE", 6, (off_t)(unsigned long)target) != 6) return 2;
  int dup_fd = dup(fd);
  lseek(dup_fd, (off_t)(unsigned long)(target + 10), SEEK_SET);
  if (write(dup_fd, "WRITE", 5) != 5) return 3;
  /* /proc/self/mem writes even where the program may not: a read-only page. */
  pwrite(fd, "R", 1, (off_t)(unsigned long)ro_text);
  close(dup_fd);
  close(fd);
  struct iovec local = {"VMWRITEV", 8}, remote = {target + 20, 8};
  if (process_vm_writev(getpid(), &local, 1, &remote, 1, 0) != 8) return 4;
  char copy[64] = {0};
  struct iovec into = {copy, 40}, from = {target, 40};
  if (process_vm_readv(getpid(), &into, 1, &from, 1, 0) != 40) return 5;
  printf("%s\n%s\n%s\n", target, copy, ro_text);
  return 0;
}
