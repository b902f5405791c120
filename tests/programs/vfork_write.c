/* vfork_write: a vfork child runs in its parent's memory and writes the parent's variables (a
 * global, a stack variable, a heap buffer) before _exit; the parent prints what it finds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int global_value = 1;

int main(void) {
  volatile int on_stack = 2;
  char *heap = malloc(3 * 4096);
  strcpy(heap, "parent");
  pid_t pid = vfork();
  if (pid == 0) {
    global_value = 41;
    on_stack = 42;
    strcpy(heap + 2 * 4096, "written by the vfork child");
    _exit(5);
  }
  int status;
  waitpid(pid, &status, 0);
  printf("global %d, stack %d, heap \"%s\" / \"%s\", child exited %d\n", global_value,
         on_stack, heap, heap + 2 * 4096, WEXITSTATUS(status));
  return 0;
}
