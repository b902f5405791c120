/* Installs seccomp filters of its own (prctl and the seccomp syscall): ERRNO and TRACE answers,
 * two filters stacked (the most restrictive answer wins), an invalid one refused. The recorder
 * runs them itself; what they answer must be what the program sees natively. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define DENY(nr, action) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, (action))

int main(void) {
  struct sock_filter first[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      DENY(SYS_getppid, SECCOMP_RET_ERRNO | 77),
      DENY(SYS_getpriority, SECCOMP_RET_TRACE),
      DENY(SYS_getuid, SECCOMP_RET_ERRNO | 11),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_filter second[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      DENY(SYS_getuid, SECCOMP_RET_ERRNO | 5),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_LOG),
  };
  struct sock_filter bad[] = {BPF_JUMP(BPF_JMP | BPF_JA, 5, 0, 0), BPF_STMT(BPF_RET | BPF_K, 0)};
  struct sock_fprog p1 = {sizeof first / sizeof first[0], first};
  struct sock_fprog p2 = {sizeof second / sizeof second[0], second};
  struct sock_fprog pb = {2, bad};
  printf("mode before: %d\n", prctl(PR_GET_SECCOMP));
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  printf("install: %d\n", prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &p1));
  printf("install second: %ld\n", syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &p2));
  long bad_rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &pb);
  printf("install invalid: %ld errno %d\n", bad_rc, errno);
  errno = 0;
  long r1 = syscall(SYS_getppid);
  int e1 = errno;
  errno = 0;
  long r2 = syscall(SYS_getpriority, 0, 0);
  int e2 = errno;
  errno = 0;
  long r3 = syscall(SYS_getuid);
  int e3 = errno;
  printf("getppid %ld/%d, getpriority %ld/%d, getuid %ld/%d, getpid ok %d, mode %d\n", r1, e1,
         r2, e2, r3, e3, getpid() > 0, prctl(PR_GET_SECCOMP));
  return 0;
}
