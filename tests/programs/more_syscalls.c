/* Syscalls real programs use that recording used to refuse: POSIX message queues, pidfd_open,
 * unshare without new namespaces, a software perf event, clock_adjtime reading the clock,
 * kcmp, syslog's buffer size. Each prints whether it worked as it does natively. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/kcmp.h>
#include <linux/perf_event.h>
#include <mqueue.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <time.h>
#include <unistd.h>

int main(void) {
  char name[64];
  snprintf(name, sizeof name, "/rrverify-mq-%d", getpid());
  struct mq_attr attr = {.mq_maxmsg = 4, .mq_msgsize = 64};
  mqd_t q = mq_open(name, O_CREAT | O_RDWR, 0600, &attr);
  char msg[64] = "";
  unsigned prio = 0;
  int sent = q >= 0 ? mq_send(q, "queued", 7, 3) : -1;
  long got = q >= 0 ? mq_receive(q, msg, sizeof msg, &prio) : -1;
  struct mq_attr now;
  mq_getattr(q, &now);
  printf("mq: sent %d, received %ld '%s' prio %u, %ld max\n", sent, got, msg, prio, now.mq_maxmsg);
  mq_close(q);
  mq_unlink(name);

  int pidfd = syscall(SYS_pidfd_open, getpid(), 0);
  printf("pidfd_open %s\n", pidfd >= 0 ? "ok" : "failed");
  printf("unshare(CLONE_FILES|CLONE_FS) %d\n", unshare(CLONE_FILES | CLONE_FS));

  struct perf_event_attr pe;
  memset(&pe, 0, sizeof pe);
  pe.type = PERF_TYPE_SOFTWARE;
  pe.size = sizeof pe;
  pe.config = PERF_COUNT_SW_TASK_CLOCK;
  pe.disabled = 1;
  int pfd = syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0);
  long long count = -1;
  if (pfd >= 0) {
    ioctl(pfd, PERF_EVENT_IOC_ENABLE, 0);
    for (volatile int i = 0; i < 100000; i++) {}
    ioctl(pfd, PERF_EVENT_IOC_DISABLE, 0);
    read(pfd, &count, sizeof count);
  }
  printf("perf task clock %s\n", count > 0 ? "counted" : "none");

  struct timex tx = {.modes = 0};
  printf("clock_adjtime %s\n", syscall(SYS_clock_adjtime, CLOCK_REALTIME, &tx) >= 0 && tx.tick > 0 ? "read" : "failed");
  printf("kcmp %ld\n", syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, 1, 1));
  printf("syslog buffer %s\n", syscall(SYS_syslog, 10, NULL, 0) > 0 ? "sized" : "unknown");
  return 0;
}
