/* unknown_syscall: makes fanotify_init(2), a real syscall that rrverify's table does not know. */
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
  puts("calling fanotify_init");
  fflush(stdout);
  long r = syscall(SYS_fanotify_init, 0, 0);
  printf("fanotify_init returned %ld\n", r);
  return 0;
}
