/* What recording must not change: the program's own view of PR_SET_TSC/PR_GET_TSC (and an
 * rdtsc that faults when the program asked for that), the legacy vsyscall page's time,
 * gettimeofday and getcpu, and ENOSYS for numbers no kernel has. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>
#include <x86intrin.h>

static sigjmp_buf env;
static void on_segv(int sig) { siglongjmp(env, sig); }

int main(void) {
  int mode = -1;
  prctl(PR_GET_TSC, &mode);
  printf("PR_GET_TSC: %d\n", mode);
  printf("PR_SET_TSC(7): %d\n", prctl(PR_SET_TSC, 7) == -1 && errno == EINVAL);
  struct sigaction sa = {0};
  sa.sa_handler = on_segv;
  sigaction(SIGSEGV, &sa, NULL);
  prctl(PR_SET_TSC, PR_TSC_SIGSEGV);
  prctl(PR_GET_TSC, &mode);
  int got = sigsetjmp(env, 1);
  if (got == 0) (void)__rdtsc();
  printf("mode %d, rdtsc %s\n", mode, got == SIGSEGV ? "faulted" : "ran");
  prctl(PR_SET_TSC, PR_TSC_ENABLE);
  got = sigsetjmp(env, 1);
  if (got == 0) (void)__rdtsc();
  printf("rdtsc %s again\n", got == SIGSEGV ? "faulted" : "ran");

  time_t (*vtime)(time_t *) = (time_t (*)(time_t *))0xffffffffff600400;
  int (*vgettimeofday)(struct timeval *, void *) = (int (*)(struct timeval *, void *))0xffffffffff600000;
  long (*vgetcpu)(unsigned *, unsigned *, void *) = (long (*)(unsigned *, unsigned *, void *))0xffffffffff600800;
  time_t t = 0;
  struct timeval tv = {0};
  unsigned cpu = 9999;
  printf("vsyscalls: %d %d %d\n", vtime(&t) > 1000000000 && t > 1000000000,
         vgettimeofday(&tv, NULL) == 0 && tv.tv_sec > 1000000000, vgetcpu(&cpu, NULL, NULL) == 0 && cpu < 4096);
  long r1 = syscall(-1), e1 = errno;
  long r2 = syscall(400), e2 = errno;
  long r3 = syscall(100000), e3 = errno;
  printf("ENOSYS: %d %d %d\n", r1 == -1 && e1 == ENOSYS, r2 == -1 && e2 == ENOSYS,
         r3 == -1 && e3 == ENOSYS);
  return 0;
}
