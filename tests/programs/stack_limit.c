/* Lowers its own RLIMIT_STACK, then recurses until the stack may grow no further and catches
 * the SIGSEGV on an alternate stack: where that happens depends on the limit the program set
 * itself (a replay that emulated setrlimit would recurse much deeper). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

static sigjmp_buf env;
static long depth;
static char altstack[1 << 16];
static void on_segv(int sig) { siglongjmp(env, sig); }

static long recurse(long n) {
  volatile char pad[1024];
  pad[0] = (char)n;
  depth = n;
  return recurse(n + 1) + pad[0];
}

int main(void) {
  struct rlimit rl;
  getrlimit(RLIMIT_STACK, &rl);
  rl.rlim_cur = 512 << 10;
  if (setrlimit(RLIMIT_STACK, &rl) < 0) return 1;
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
  sigaltstack(&ss, NULL);
  struct sigaction sa = {0};
  sa.sa_handler = on_segv;
  sa.sa_flags = SA_ONSTACK;
  sigaction(SIGSEGV, &sa, NULL);
  if (sigsetjmp(env, 1) == 0) recurse(0);
  printf("the stack stopped growing below %ld KiB\n", (depth + 1) * 1040 / 1024 / 64 * 64 + 64);
  return 0;
}
