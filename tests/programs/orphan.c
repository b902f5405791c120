/* orphan DIR: a child forks a grandchild and exits at once; the grandchild, re-parented, runs on
 * and writes DIR/orphan.txt after its parent's parent has exited (the recording must wait). */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void pause_ms(long ms) {
  struct timespec t = {ms / 1000, ms % 1000 * 1000000};
  nanosleep(&t, NULL);
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  char path[4096];
  snprintf(path, sizeof path, "%s/orphan.txt", argv[1]);
  unlink(path);
  pid_t child = fork();
  if (child == 0) {
    if (fork() == 0) {
      pause_ms(300);
      int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const char *text = "written by the orphaned grandchild\n";
      write(fd, text, strlen(text));
      close(fd);
      _exit(0);
    }
    _exit(0);
  }
  int status;
  waitpid(child, &status, 0);
  pause_ms(50);
  printf("parent: child exited %d, grandchild still running\n", WEXITSTATUS(status));
  return 0;
}
