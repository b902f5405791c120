/* proc_stat.h: what /proc/PID/stat says of another process, for test programs that must
 * know where it is before they signal it. */
#include <stdio.h>
#include <sys/types.h>

/* pid's state letter ('S': asleep in a blocking syscall), and its user time in clock ticks;
 * '?' and -1 if unreadable. */
static inline char proc_stat(pid_t pid, long *user_ticks) {
  char path[64], state = '?';
  long utime = -1;
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f || fscanf(f, "%*d (%*[^)]) %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld", &state,
                   &utime) != 2)
    state = '?', utime = -1;
  if (f) fclose(f);
  if (user_ticks) *user_ticks = utime;
  return state;
}
