/* shared_memory.c: what another process changed in memory that a recorded process shares with
 * it, found by hashing that memory before and after (no syscall result says what another
 * process wrote there).
 * - A vfork child runs in its parent's memory until it execs or exits, while the parent
 *   waits: the parent's vfork event carries every page the child changed.
 * - Processes that share a writable MAP_SHARED mapping run user code one at a time (the
 *   session's token, recorder.c): a process's syscall event carries the pages the others
 *   changed in its shared mappings while it was in the kernel. */

struct mem_range {
  uint64_t start, end;
  char perms[5];
  uint64_t *hashes;     /* one per page */
};

struct mem_snapshot {
  int n;
  int shared_only;      /* of the writable MAP_SHARED mappings only */
  struct mem_range *ranges;
};

static void mem_snapshot_free(struct mem_snapshot *snap) {
  if (!snap) return;
  for (int i = 0; i < snap->n; i++) free(snap->ranges[i].hashes);
  free(snap->ranges);
  free(snap);
}

/* The writable (shared_only: and MAP_SHARED) mappings of pid, hashes not yet filled. NULL on
 * failure. */
static struct mem_snapshot *writable_mappings(int pid, int shared_only) {
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/%d/maps", pid);
  FILE *maps = fopen(path, "re");
  if (!maps) return NULL;
  struct mem_snapshot *snap = calloc(1, sizeof *snap);
  int cap = 0;
  while (snap && fgets(line, sizeof line, maps)) {
    unsigned long long lo, hi;
    char perms[5];
    if (sscanf(line, "%llx-%llx %4s", &lo, &hi, perms) != 3 || perms[1] != 'w' ||
        (shared_only && perms[3] != 's'))
      continue;
    if (snap->n == cap) {
      cap = cap ? cap * 2 : 32;
      struct mem_range *grown = realloc(snap->ranges, cap * sizeof *grown);
      if (!grown) {
        mem_snapshot_free(snap);
        snap = NULL;
        break;
      }
      snap->ranges = grown;
    }
    struct mem_range *m = &snap->ranges[snap->n++];
    m->start = lo;
    m->end = hi;
    memcpy(m->perms, perms, sizeof m->perms);
    m->hashes = NULL;
  }
  fclose(maps);
  if (snap) snap->shared_only = shared_only;
  return snap;
}

/* Page hashes of [m->start, m->end) as the tracee's memory holds it now (unreadable pages
 * hash as zeros). */
static int hash_range(int pid, struct mem_range *m) {
  enum { CHUNK = 256 };    /* pages read at once */
  static uint8_t buf[CHUNK * 4096];
  uint64_t pages = (m->end - m->start) / 4096;
  m->hashes = malloc(pages * sizeof *m->hashes);
  if (!m->hashes) return -1;
  for (uint64_t done = 0; done < pages; done += CHUNK) {
    uint64_t n = pages - done < CHUNK ? pages - done : CHUNK;
    ssize_t got = rrv_read_mem(pid, m->start + done * 4096, buf, n * 4096);
    if (got < (ssize_t)(n * 4096)) memset(buf + (got > 0 ? got : 0), 0, n * 4096 - (got > 0 ? got : 0));
    rrv_page_hashes(buf, n, m->hashes + done);
  }
  return 0;
}

static struct mem_snapshot *mem_snapshot_take(int pid, int shared_only) {
  struct mem_snapshot *snap = writable_mappings(pid, shared_only);
  for (int i = 0; snap && i < snap->n; i++)
    if (hash_range(pid, &snap->ranges[i])) {
      mem_snapshot_free(snap);
      return NULL;
    }
  return snap;
}

/* Call changed(ctx, addr, len) for each run of pages whose content differs from `before`.
 * Returns 0, -1 (failure, or changed's), or -2 if the mappings are not the same ones (the
 * other process mapped or unmapped memory: not a change of contents). lenient: compare the
 * mappings that are still the same ones, and no others (the process's own syscall may have
 * mapped or unmapped some, which replay does too). */
static int mem_snapshot_changes(const struct mem_snapshot *before, int pid, int lenient,
                                int (*changed)(void *, uint64_t, uint64_t), void *ctx) {
  struct mem_snapshot *now = writable_mappings(pid, before->shared_only);
  if (!now) return -1;
  int rc = 0;
  if (now->n != before->n && !lenient) rc = -2;
  for (int i = 0, j = 0; !rc && i < now->n; i++) {
    struct mem_range *b = &now->ranges[i], *a = NULL;
    while (j < before->n && before->ranges[j].end <= b->start) j++;
    if (j < before->n) a = &before->ranges[j];
    if (!a || a->start != b->start || a->end != b->end || memcmp(a->perms, b->perms, 4)) {
      if (!lenient) rc = -2;
      continue;
    }
    if (hash_range(pid, b)) {
      rc = -1;
      break;
    }
    uint64_t pages = (b->end - b->start) / 4096, run = 0;
    for (uint64_t p = 0; p <= pages && !rc; p++) {
      int differs = p < pages && a->hashes[p] != b->hashes[p];
      if (differs) {
        run++;
      } else if (run) {
        rc = changed(ctx, b->start + (p - run) * 4096, run * 4096);
        run = 0;
      }
    }
  }
  mem_snapshot_free(now);
  return rc;
}

/* Does pid have a writable MAP_SHARED mapping (which a forked child would share)? The first
 * one's bounds. */
static int shared_writable_mapping(int pid, uint64_t *lo, uint64_t *hi) {
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/%d/maps", pid);
  FILE *maps = fopen(path, "re");
  if (!maps) return 0;
  int found = 0;
  while (!found && fgets(line, sizeof line, maps)) {
    unsigned long long a, b;
    char perms[5];
    if (sscanf(line, "%llx-%llx %4s", &a, &b, perms) == 3 && perms[1] == 'w' && perms[3] == 's') {
      *lo = a;
      *hi = b;
      found = 1;
    }
  }
  fclose(maps);
  return found;
}

/* Does pid map the file (dev, ino) shared? 2 if writable, 1 if read-only, 0 if not. */
static int maps_shared_object(int pid, dev_t dev, ino_t ino) {
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/%d/maps", pid);
  FILE *maps = fopen(path, "re");
  if (!maps) return 0;
  int found = 0;
  while (!found && fgets(line, sizeof line, maps)) {
    unsigned long long lo, hi, off, i;
    unsigned maj, min;
    char perms[5];
    if (sscanf(line, "%llx-%llx %4s %llx %x:%x %llu", &lo, &hi, perms, &off, &maj, &min,
               &i) == 7 && perms[3] == 's' && i == ino && maj == major(dev) && min == minor(dev))
      found = perms[1] == 'w' ? 2 : 1;
  }
  fclose(maps);
  return found;
}
