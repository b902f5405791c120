/* Takes a timer signal in pause() fifty times and siglongjmps out of its handler each time: the
 * kernel writes every signal frame, including its trap state (sigcontext trapno: 13 once an
 * rdtsc has trapped), onto the stack. */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>
#include <unistd.h>
static sigjmp_buf env;
static volatile int hits;
static void on_alarm(int sig) { hits++; siglongjmp(env, 1); }
int main(void) {
  struct sigaction sa = {0};
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, NULL);
  for (int i = 0; i < 50; i++) {
    if (sigsetjmp(env, 1) == 0) {
      struct itimerval it = {{0, 0}, {0, 1000}};
      setitimer(ITIMER_REAL, &it, NULL);
      for (;;) pause();
    }
  }
  printf("hits %d\n", hits);
  return 0;
}
