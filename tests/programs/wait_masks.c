/* The syscalls that wait under a signal mask of their own (sigsuspend, ppoll, pselect,
 * epoll_pwait): SIGUSR1 is blocked and pending, and each of them unblocks it while it waits,
 * so it is delivered there, then blocked again. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <unistd.h>

static volatile int caught;
static void on_usr1(int sig) { caught++; }

static int blocked_now(void) {
  sigset_t cur;
  sigprocmask(SIG_BLOCK, NULL, &cur);
  return sigismember(&cur, SIGUSR1);
}

int main(void) {
  struct sigaction sa = {0};
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  sigset_t usr1, none;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigemptyset(&none);
  sigprocmask(SIG_BLOCK, &usr1, NULL);
  int ep = epoll_create1(0);
  struct epoll_event evs[1];
  for (int round = 0; round < 4; round++) {
    raise(SIGUSR1);            /* pending: blocked */
    int r = -2;
    if (round == 0) r = sigsuspend(&none);
    if (round == 1) r = ppoll(NULL, 0, NULL, &none);
    if (round == 2) r = pselect(0, NULL, NULL, NULL, NULL, &none);
    if (round == 3) r = epoll_pwait(ep, evs, 1, -1, &none);
    printf("round %d: returned %d (%s), caught %d, USR1 blocked again %d\n", round, r,
           r < 0 && errno == EINTR ? "EINTR" : "?", caught, blocked_now());
  }
  return 0;
}
