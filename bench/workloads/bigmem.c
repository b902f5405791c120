/* A process of N MiB (argv[1]) whose every page is distinct and nonzero, that then exits:
 * checkpoint 0 is small, the final one (before the exit) holds it all. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
  size_t size = mib << 20;
  uint64_t *p = malloc(size);
  if (!p) return 1;
  for (size_t i = 0; i < size / 8; i++) p[i] = i * 0x9e3779b97f4a7c15ull + 1;
  printf("filled %zu MiB\n", mib);
  return 0;
}
