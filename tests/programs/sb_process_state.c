/* Buffered syscalls that change the process itself, which replay runs again: rt_sigaction
 * setting a handler (and querying it), anonymous mmap, brk (through syscall(2): glibc's own
 * brk wrapper is not patchable). Each site is called a few times, so that after its first
 * (traced: it is patched then) the calls go through the preload. The last handler set is then
 * run by a signal: replay must have set it too. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile sig_atomic_t caught;
static void on_usr1(int sig) { caught += sig; }
static void on_usr2(int sig) { caught += 2 * sig; }

int main(void) {
  unsigned long sum = 0;
  for (int i = 0; i < 4; i++) {
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = i % 2 ? on_usr2 : on_usr1;
    if (sigaction(SIGUSR1, &sa, &old) || sigaction(SIGUSR1, NULL, &old)) return 1;
    sum += old.sa_handler == sa.sa_handler;
    char *p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 2;
    memset(p, 'a' + i, 3 * 4096);
    sum += p[4096 + i];
    long end = syscall(SYS_brk, 0);
    if (syscall(SYS_brk, end + 8192) != end + 8192) return 3;
    ((char *)end)[100] = (char)i;
    sum += ((char *)end)[100];
  }
  raise(SIGUSR1);      /* the last handler set: on_usr2 */
  printf("sum %lu, caught %d\n", sum, (int)caught);
  return caught == 2 * SIGUSR1 ? 0 : 4;
}
