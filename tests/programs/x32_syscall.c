/* An x32-ABI syscall number (bit 30 set) from a 64-bit process: getpid as x32 39. */
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(void) {
  printf("before\n");
  fflush(stdout);
  long r = syscall(0x40000000L | SYS_getpid);
  printf("x32 getpid returned %ld\n", r);
  return 0;
}
