/* default_action_fork: a default action keeps the flags and mask it was set with (glibc adds
 * SA_RESTORER), and a fork child inherits them: the child reads them back with sigaction. */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static void show(const char *who) {
  struct sigaction old;
  sigaction(SIGTERM, NULL, &old);
  printf("%s: SIGTERM %s, flags %#x, %s mask\n", who,
         old.sa_handler == SIG_DFL ? "default" : "not default", (unsigned)old.sa_flags,
         sigismember(&old.sa_mask, SIGINT) ? "full" : "empty");
  fflush(stdout);
}

int main(void) {
  struct sigaction sa = {0};
  sa.sa_handler = SIG_DFL;
  sigfillset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  show("parent");
  pid_t pid = fork();
  if (pid == 0) {
    show("child");
    _exit(0);
  }
  waitpid(pid, NULL, 0);
  return 0;
}
