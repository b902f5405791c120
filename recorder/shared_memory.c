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

struct mapping {          /* a line of /proc/PID/maps */
  uint64_t start, end, offset, inode;
  unsigned major, minor;
  char perms[5];
};

/* visit(m, ctx) for each mapping of pid until it returns nonzero: that value, 0, or -1 if
 * the maps are unreadable. */
static int scan_mappings(int pid, int (*visit)(const struct mapping *, void *), void *ctx) {
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/%d/maps", pid);
  FILE *maps = fopen(path, "re");
  if (!maps) return -1;
  int rc = 0;
  while (!rc && fgets(line, sizeof line, maps)) {
    struct mapping m;
    unsigned long long lo, hi, off, ino;
    if (sscanf(line, "%llx-%llx %4s %llx %x:%x %llu", &lo, &hi, m.perms, &off, &m.major,
               &m.minor, &ino) != 7)
      continue;
    m.start = lo, m.end = hi, m.offset = off, m.inode = ino;
    rc = visit(&m, ctx);
  }
  fclose(maps);
  return rc;
}

/* The writable (shared_only: and MAP_SHARED) mappings of pid, hashes not yet filled. NULL on
 * failure. */
struct collect_ctx { struct mem_snapshot *snap; int cap, shared_only, failed; };

static int collect_writable(const struct mapping *m, void *ctx) {
  struct collect_ctx *c = ctx;
  if (m->perms[1] != 'w' || (c->shared_only && m->perms[3] != 's')) return 0;
  struct mem_snapshot *snap = c->snap;
  if (snap->n == c->cap) {
    c->cap = c->cap ? c->cap * 2 : 32;
    struct mem_range *grown = realloc(snap->ranges, c->cap * sizeof *grown);
    if (!grown) return c->failed = 1;
    snap->ranges = grown;
  }
  struct mem_range *r = &snap->ranges[snap->n++];
  r->start = m->start;
  r->end = m->end;
  memcpy(r->perms, m->perms, sizeof r->perms);
  r->hashes = NULL;
  return 0;
}

static struct mem_snapshot *writable_mappings(int pid, int shared_only) {
  struct collect_ctx c = {calloc(1, sizeof(struct mem_snapshot)), 0, shared_only, 0};
  if (!c.snap) return NULL;
  c.snap->shared_only = shared_only;
  if (scan_mappings(pid, collect_writable, &c) < 0 || c.failed) {
    mem_snapshot_free(c.snap);
    return NULL;
  }
  return c.snap;
}

/* Page hashes of [m->start, m->end) as the tracee's memory holds it now (unreadable pages
 * hash as zeros). Private pages the process has not touched (not present in
 * /proc/PID/pagemap, nor swapped) hash as zeros without being read: a JVM's or a sanitizer's huge reserved mappings
 * cost their page table, not their size. */
static int hash_range(int pid, struct mem_range *m) {
  enum { CHUNK = 256 };    /* pages read at once */
  static __thread uint8_t buf[CHUNK * 4096];
  static __thread uint64_t zero_hash;
  static __thread int have_zero_hash;
  uint64_t present[CHUNK];
  uint64_t pages = (m->end - m->start) / 4096;
  if (!have_zero_hash) {
    memset(buf, 0, 4096);
    rrv_page_hashes(buf, 1, &zero_hash);
    have_zero_hash = 1;
  }
  m->hashes = malloc(pages * sizeof *m->hashes);
  if (!m->hashes) return -1;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/pagemap", pid);
  int pagemap = open(path, O_RDONLY | O_CLOEXEC);
  for (uint64_t done = 0; done < pages; done += CHUNK) {
    uint64_t n = pages - done < CHUNK ? pages - done : CHUNK;
    uint64_t first = (m->start >> 12) + done;
    int known = pagemap >= 0 && m->perms[3] == 'p' &&   /* a shared page may be only in
                                                            another process's page tables */
                pread(pagemap, present, n * 8, first * 8) == (ssize_t)(n * 8);
    uint64_t lo = 0, hi = n;      /* read only from the first present page to the last */
    if (known) {
      while (lo < n && !(present[lo] >> 62)) lo++;     /* bit 63: present, 62: swapped */
      while (hi > lo && !(present[hi - 1] >> 62)) hi--;
    }
    for (uint64_t i = 0; i < lo; i++) m->hashes[done + i] = zero_hash;
    for (uint64_t i = hi; i < n; i++) m->hashes[done + i] = zero_hash;
    if (lo == hi) continue;
    size_t want = (hi - lo) * 4096;
    ssize_t got = rrv_read_mem(pid, m->start + (done + lo) * 4096, buf, want);
    if (got < (ssize_t)want) memset(buf + (got > 0 ? got : 0), 0, want - (got > 0 ? got : 0));
    rrv_page_hashes(buf, hi - lo, m->hashes + done + lo);
  }
  if (pagemap >= 0) close(pagemap);
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

struct object_ctx { dev_t dev; ino_t ino; int found; uint64_t start; };

static int writable_shared(const struct mapping *m, void *ctx) {
  if (m->perms[1] != 'w' || m->perms[3] != 's') return 0;
  ((struct object_ctx *)ctx)->start = m->start;
  ((struct object_ctx *)ctx)->found = (int)((m->end - m->start) >> 12);   /* pages */
  return 1;
}

/* Does pid have a writable MAP_SHARED mapping (which a forked child would share)? The first
 * one's bounds. */
static int shared_writable_mapping(int pid, uint64_t *lo, uint64_t *hi) {
  struct object_ctx c = {0, 0, 0, 0};
  if (scan_mappings(pid, writable_shared, &c) <= 0) return 0;
  *lo = c.start;
  *hi = c.start + ((uint64_t)c.found << 12);
  return 1;
}

static int same_object(const struct mapping *m, void *ctx) {
  struct object_ctx *c = ctx;
  if (m->perms[3] != 's' || m->inode != c->ino || m->major != major(c->dev) ||
      m->minor != minor(c->dev))
    return 0;
  if (!c->found) c->start = m->start;
  c->found = m->perms[1] == 'w' ? 2 : 1;
  return c->found == 2;     /* a writable one ends the search */
}

/* Does pid map the file (dev, ino) shared? 2 if writable, 1 if read-only, 0 if not;
 * *start: where its first such mapping begins. */
static int maps_shared_object(int pid, dev_t dev, ino_t ino, uint64_t *start) {
  struct object_ctx c = {dev, ino, 0, 0};
  scan_mappings(pid, same_object, &c);
  if (start) *start = c.start;
  return c.found;
}
