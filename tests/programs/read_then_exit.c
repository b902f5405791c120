/* Reads a file into memory and exits without showing it: what it read reaches no register
 * or syscall after the read, only the final state of its memory. */
#include <fcntl.h>
#include <unistd.h>

static char buf[4096];

int main(int argc, char **argv) {
  int fd = open(argc > 1 ? argv[1] : "/etc/hostname", O_RDONLY);
  if (fd < 0) return 1;
  ssize_t n = read(fd, buf, sizeof buf);
  close(fd);
  return n > 0 ? 0 : 2;
}
