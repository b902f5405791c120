/* pipe_sink: counts the bytes on its stdin with read(2), then forgets them (its buffer zeroed
 * before it exits) and prints only the count: what it read shows in no later event and in no
 * checkpoint, so only the pipe-data cross-process check can tell bytes it was recorded reading
 * from the bytes its writer wrote (test_crossprocess.py). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void) {
  static char buf[4096];
  long total = 0;
  ssize_t n;
  while ((n = read(0, buf, sizeof buf)) > 0) total += n;
  memset(buf, 0, sizeof buf);
  printf("%ld\n", total);
  return 0;
}
