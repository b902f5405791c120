/* threads: creates a thread (clone), which recording does not support yet. */
#include <pthread.h>
#include <stdio.h>

static void *worker(void *arg) { return arg; }

int main(void) {
  pthread_t t;
  puts("starting a thread");
  fflush(stdout);
  pthread_create(&t, NULL, worker, NULL);
  pthread_join(t, NULL);
  puts("joined");
  return 0;
}
