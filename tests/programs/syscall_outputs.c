/* Outputs that live outside a syscall's result: the offsets copy_file_range, sendfile and
 * splice advance, fcntl and prctl getters, a pipe's FIONREAD; and what the recorder set for
 * itself (no_new_privs, a seccomp filter), which the program must not see. argv[1]: a dir. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <unistd.h>

int main(int argc, char **argv) {
  char path[4096];
  snprintf(path, sizeof path, "%s/rrv_outputs_%d", argc > 1 ? argv[1] : "/tmp", getpid());
  int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
  if (fd < 0) return 1;
  const char *text = "0123456789abcdefghijklmnopqrstuvwxyz";
  write(fd, text, strlen(text));
  int out = open("/dev/null", O_WRONLY);
  char path2[4200];
  snprintf(path2, sizeof path2, "%s.copy", path);
  int fd2 = open(path2, O_CREAT | O_RDWR | O_TRUNC, 0644);
  loff_t in_off = 3, out_off = 2;
  long n1 = copy_file_range(fd, &in_off, fd2, &out_off, 5, 0);
  off_t sf_off = 10;
  long n2 = sendfile(out, fd, &sf_off, 7);
  int p[2];
  pipe(p);
  loff_t sp_off = 20;
  long n3 = splice(fd, &sp_off, p[1], NULL, 6, 0);
  int avail = -1;
  ioctl(p[0], FIONREAD, &avail);
  unsigned long long hint = 99;
  int hr = fcntl(fd, F_GET_RW_HINT, &hint);
  int pdeath = -1, subreaper = -1;
  prctl(PR_GET_PDEATHSIG, &pdeath);
  prctl(PR_GET_CHILD_SUBREAPER, &subreaper);
  unsigned long auxv[64] = {0};
  long auxv_size = prctl(0x41555856 /* PR_GET_AUXV */, auxv, sizeof auxv, 0, 0);
  printf("copy_file_range %ld -> offsets %lld %lld\n", n1, (long long)in_off, (long long)out_off);
  printf("sendfile %ld -> offset %lld; splice %ld -> offset %lld, FIONREAD %d\n", n2,
         (long long)sf_off, n3, (long long)sp_off, avail);
  printf("F_GET_RW_HINT %d %llu; PDEATHSIG %d SUBREAPER %d; auxv %s\n", hr, hint, pdeath,
         subreaper, auxv_size > 0 && auxv[0] != 0 ? "read" : "none");
  printf("no_new_privs %d, seccomp %d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
         prctl(PR_GET_SECCOMP, 0, 0, 0, 0));
  unlink(path);
  unlink(path2);
  return 0;
}
