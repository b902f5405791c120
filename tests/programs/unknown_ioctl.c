/* An ioctl whose number does not say what it writes (no _IOC direction or size) and that
 * rrverify's table does not know: refused before it runs, never guessed. */
#include <stdio.h>
#include <sys/ioctl.h>

int main(void) {
  puts("calling ioctl 0x54ff");
  fflush(stdout);
  printf("returned %d\n", ioctl(1, 0x54ff, 0));
  return 0;
}
