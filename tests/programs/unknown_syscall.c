/* unknown_syscall: makes kcmp(2), a real syscall that rrverify's table does not know. */
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
  puts("calling kcmp");
  fflush(stdout);
  long r = syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, 0, 0);
  printf("kcmp returned %ld\n", r);
  return 0;
}
