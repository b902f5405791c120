/* SysV message queues and semaphores, and several messages at once with sendmmsg/recvmmsg:
 * what each writes back (message text and type, the sets' STAT structures, every message's
 * length and data) must be recorded. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/socket.h>
#include <unistd.h>

struct text { long mtype; char mtext[32]; };

int main(void) {
  int q = msgget(IPC_PRIVATE, 0600);
  struct text out = {7, "through the queue"}, in = {0, ""};
  msgsnd(q, &out, strlen(out.mtext) + 1, 0);
  struct msqid_ds qs;
  msgctl(q, IPC_STAT, &qs);
  long got = msgrcv(q, &in, sizeof in.mtext, 0, 0);
  printf("msgrcv %ld: type %ld '%s', %lu queued before\n", got, in.mtype, in.mtext, (unsigned long)qs.msg_qnum);
  msgctl(q, IPC_RMID, NULL);

  int s = semget(IPC_PRIVATE, 2, 0600);
  struct sembuf up = {1, 3, 0};
  semop(s, &up, 1);
  struct semid_ds ss;
  union { int val; struct semid_ds *buf; } arg = {.buf = &ss};
  semctl(s, 0, IPC_STAT, arg);
  unsigned short all[2] = {9, 9}, set[2] = {5, 6};
  semctl(s, 0, GETALL, all);
  printf("semaphores: %lu in the set, #1 is %d, all %d %d\n", (unsigned long)ss.sem_nsems,
         semctl(s, 1, GETVAL), all[0], all[1]);
  semctl(s, 0, SETALL, set);
  semctl(s, 0, GETALL, all);
  printf("after SETALL: %d %d\n", all[0], all[1]);
  semctl(s, 0, IPC_RMID);

  int sv[2];
  socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
  char a[] = "first", b[] = "second one";
  struct iovec iov_out[2] = {{a, sizeof a}, {b, sizeof b}};
  struct mmsghdr msgs_out[2] = {{.msg_hdr = {.msg_iov = &iov_out[0], .msg_iovlen = 1}},
                                {.msg_hdr = {.msg_iov = &iov_out[1], .msg_iovlen = 1}}};
  int sent = sendmmsg(sv[0], msgs_out, 2, 0);
  char ra[16] = "", rb[16] = "";
  struct iovec iov_in[2] = {{ra, sizeof ra}, {rb, sizeof rb}};
  struct mmsghdr msgs_in[2] = {{.msg_hdr = {.msg_iov = &iov_in[0], .msg_iovlen = 1}},
                               {.msg_hdr = {.msg_iov = &iov_in[1], .msg_iovlen = 1}}};
  int recvd = recvmmsg(sv[1], msgs_in, 2, 0, NULL);
  printf("sendmmsg %d (%u, %u), recvmmsg %d: '%s' (%u) '%s' (%u)\n", sent, msgs_out[0].msg_len,
         msgs_out[1].msg_len, recvd, ra, msgs_in[0].msg_len, rb, msgs_in[1].msg_len);
  return 0;
}
