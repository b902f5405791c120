/* A stopped tracee's memory as a checkpoint reads it (checkpoints/capture.py: read_memory), in
 * two native calls whatever the number of regions: rrv_plan_reads splits every region into runs
 * of pages to read, pages still their file's and untouched pages (from /proc/PID/pagemap), and
 * rrv_read_runs reads the runs to read with one process_vm_readv per 1024 of them. Done from
 * Python region by region, the calls and their bookkeeping cost more than the bytes: 25
 * mappings a process, five checkpoint reads a process in a build. Neither needs the tracer's
 * thread: any thread may read a tracee that stays in its ptrace stop. */
#include <sys/uio.h>

#define PAGEMAP_PRESENT (1ull << 63)
#define PAGEMAP_SWAPPED (1ull << 62)
#define PAGEMAP_FILE_OR_SHARED (1ull << 61)
#define READ_BATCH 1024     /* iovecs a process_vm_readv takes (UIO_MAXIOV) */

/* Append a run, or extend the previous one (same region and kind, and not at a chunk's
 * start, chunk0: runs never span chunks). */
static void add_run(struct rrv_run *runs, size_t cap, int64_t *n, uint32_t region, uint32_t kind,
                    uint64_t first, uint64_t count, uint64_t chunk0) {
  if (!count) return;
  if (first != chunk0 && *n > 0 && (size_t)*n <= cap) {
    struct rrv_run *last = &runs[*n - 1];
    if (last->region == region && last->kind == kind && last->first + last->count == first) {
      last->count += count;
      return;
    }
  }
  if ((size_t)*n < cap) runs[*n] = (struct rrv_run){region, kind, first, count};
  (*n)++;
}

/* The runs of every region, in address order. A run lies within one chunk of chunk_pages
 * pages of its region (a read holds at most that much). Returns how many runs there are,
 * which may be more than cap (only cap are written then: call again with room). An
 * unreadable pagemap makes a region's pages all read. */
int64_t rrv_plan_reads(int pagemap_fd, const struct rrv_region_plan *regions, size_t n,
                       uint64_t chunk_pages, struct rrv_run *runs, size_t cap) {
  uint64_t *entries = malloc(chunk_pages ? chunk_pages * 8 : 8);   /* (malloc(0) may be NULL) */
  if (!entries) return -1;
  int64_t out = 0;
  for (size_t r = 0; r < n; r++) {
    const struct rrv_region_plan *p = &regions[r];
    for (uint64_t c0 = 0; c0 < p->npages; c0 += chunk_pages) {
      uint64_t m = p->npages - c0 < chunk_pages ? p->npages - c0 : chunk_pages;
      uint64_t known = 0;    /* pages of this chunk whose pagemap entry decides */
      if (p->mode == RRV_REGION_ANON) known = m;
      else if (p->mode == RRV_REGION_FILE)
        known = p->in_file > c0 ? (p->in_file - c0 < m ? p->in_file - c0 : m) : 0;
      if (known && (pagemap_fd < 0 ||
                    pread(pagemap_fd, entries, known * 8, ((p->start >> 12) + c0) * 8) !=
                        (ssize_t)(known * 8))) {
        add_run(runs, cap, &out, r, RRV_RUN_READ, c0, m, c0);
        continue;
      }
      uint64_t begin = c0;
      uint32_t kind = RRV_RUN_READ;
      for (uint64_t i = 0; i < known; i++) {
        uint64_t e = entries[i];
        uint32_t k;
        if (p->mode == RRV_REGION_ANON)
          k = e & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED) ? RRV_RUN_READ : RRV_RUN_ZERO;
        else
          k = (e & PAGEMAP_FILE_OR_SHARED) || !(e & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED))
                  ? RRV_RUN_FILE : RRV_RUN_READ;
        if (i == 0) kind = k;
        else if (k != kind) {
          add_run(runs, cap, &out, r, kind, begin, c0 + i - begin, c0);
          begin = c0 + i;
          kind = k;
        }
      }
      if (known) add_run(runs, cap, &out, r, kind, begin, c0 + known - begin, c0);
      /* past the file's end, or a region read whole */
      add_run(runs, cap, &out, r, RRV_RUN_READ, c0 + known, m - known, c0);
    }
  }
  free(entries);
  return out;
}

/* The rest of run k, from byte `done` on, through /proc/PID/mem (which reads what
 * process_vm_readv refuses: PROT_NONE pages): in one pread, then page by page from where that
 * stopped. A page that cannot be read is zeros, and (k, page) goes to unreadable; once a read
 * finds no memory at all (0: the process is gone), so do all the pages after it. */
static void read_rest(int mem_fd, uint64_t addr, uint8_t *buf, uint64_t len, uint64_t done,
                      uint32_t k, uint32_t *unreadable, size_t cap, int64_t *nun) {
  int gone = 0;
  while (done < len) {
    ssize_t m = pread(mem_fd, buf + done, len - done, addr + done);
    if (m <= 0) break;
    done += m;
  }
  while (done < len) {
    uint64_t page_end = (done / 4096 + 1) * 4096;
    ssize_t m = gone ? -1 : pread(mem_fd, buf + done, page_end - done, addr + done);
    if (m > 0) {
      done += m;
      continue;
    }
    gone |= m == 0;
    memset(buf + done - done % 4096, 0, 4096);
    if ((size_t)*nun < cap) {
      unreadable[2 * *nun] = k;
      unreadable[2 * *nun + 1] = (uint32_t)(done / 4096);
    }
    (*nun)++;
    done = page_end;
  }
}

/* Read every RRV_RUN_READ run of runs[0..n) into bufs[k] (its count pages); bufs[k] of other
 * runs is ignored. mem_fd: the caller's /proc/PID/mem, open. Every byte of those buffers is
 * written (the caller need not clear them). Returns the number of pages that could not be
 * read (zeros in their buffers; the first cap of them listed in unreadable as (run, page in
 * run) pairs). */
int64_t rrv_read_runs(int pid, int mem_fd, const struct rrv_region_plan *regions,
                      const struct rrv_run *runs, size_t n, uint8_t *const *bufs,
                      uint32_t *unreadable, size_t cap) {
  struct iovec local[READ_BATCH], remote[READ_BATCH];
  uint32_t which[READ_BATCH];
  int64_t nun = 0;
  size_t k = 0;
  while (k < n) {
    int batch = 0;
    for (; k < n && batch < READ_BATCH; k++) {
      if (runs[k].kind != RRV_RUN_READ) continue;
      uint64_t len = runs[k].count * 4096;
      local[batch] = (struct iovec){bufs[k], len};
      remote[batch] = (struct iovec){
          (void *)(uintptr_t)(regions[runs[k].region].start + runs[k].first * 4096), len};
      which[batch++] = k;
    }
    int next = 0;
    while (next < batch) {
      ssize_t got = process_vm_readv(pid, local + next, batch - next, remote + next,
                                     batch - next, 0);
      uint64_t left = got > 0 ? (uint64_t)got : 0;
      while (next < batch && left >= local[next].iov_len) left -= local[next++].iov_len;
      if (next == batch) break;
      /* iovec `next` stopped short: the rest of it page by page, then on from the one after */
      read_rest(mem_fd, (uint64_t)(uintptr_t)remote[next].iov_base, local[next].iov_base,
                local[next].iov_len, left, which[next], unreadable, cap, &nun);
      next++;
    }
  }
  return nun;
}
