/* signal_moved: children born while a sibling computes, each sent SIGUSR1 (whose handler they
 * inherit) by their parent right after the fork: while the recorder takes their birth
 * checkpoint and moves them to another CPU's tracer thread (docs/checks.md §13.5), parked with
 * every signal blocked. Each must get the signal exactly there, traced: it waits for it in
 * sched_yield calls and exits 0 once its handler ran, 2 if it never came. */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got;
static void on_usr1(int sig) { (void)sig; got++; }

int main(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  pid_t load = fork();
  if (load == 0) {             /* keeps this CPU's tracer busy: the children move */
    volatile unsigned long x = 1;
    for (unsigned long i = 0; i < 250000000ul; i++) x = x * 6364136223846793005ul + i;
    _exit(0);
  }
  int bad = 0;
  for (int k = 0; k < 6; k++) {
    pid_t child = fork();
    if (child == 0) {
      for (long spins = 0; !got && spins < 3000000; spins++) sched_yield();
      _exit(got == 1 ? 0 : 2);
    }
    kill(child, SIGUSR1);
    int status;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status)) {
      printf("child %d: status 0x%x\n", k, status);
      bad = 1;
    }
  }
  int status;
  waitpid(load, &status, 0);
  printf("%s\n", bad ? "a signal was lost" : "every child got its signal");
  return bad;
}
