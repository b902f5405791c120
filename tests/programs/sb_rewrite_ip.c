/* rr issue #3285's shape: a signal lands in a blocked buffered read, and its handler rewrites
 * the interrupted frame's ip to another function (the Julia runtime does this). The program
 * then goes on making buffered syscalls from there. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

static int p[2];

static void escape(void) {
  struct timespec ts;
  long sum = 0;
  for (int i = 0; i < 200; i++) {
    clock_gettime(CLOCK_MONOTONIC, &ts);
    sum += getpid() > 0;
  }
  char buf[64];
  int n = snprintf(buf, sizeof buf, "escaped after the read, %ld calls\n", sum);
  if (write(1, buf, n) != n) _exit(2);
  _exit(0);
}

static void handler(int sig, siginfo_t *si, void *ctx) {
  (void)sig;
  (void)si;
  ucontext_t *uc = ctx;
  /* enter escape() as a call would: a fresh, aligned stack below the frame */
  uc->uc_mcontext.gregs[REG_RSP] = ((uc->uc_mcontext.gregs[REG_RSP] - 512) & ~15L) - 8;
  uc->uc_mcontext.gregs[REG_RIP] = (greg_t)escape;
}

int main(void) {
  char c;
  if (pipe(p)) return 1;
  /* patch read's and write's sites first, so that the blocking read below is buffered */
  if (write(p[1], "x", 1) != 1 || read(p[0], &c, 1) != 1) return 1;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = handler;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval it = {{0, 0}, {0, 50000}};
  setitimer(ITIMER_REAL, &it, NULL);
  ssize_t n = read(p[0], &c, 1);   /* blocks until SIGALRM */
  printf("not reached: read returned %zd\n", n);
  return 1;
}
