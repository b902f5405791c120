/* The names of a run of pages a checkpoint read, keeping those of any earlier checkpoint of
 * the recording where a page at the same address had the same bytes (checkpoints/capture.py:
 * UnchangedPages).
 *
 * The table maps an address and the fast 64-bit hash (rrv_page_hashes) of a page's bytes
 * there to their name (SHA-256/16): a page found keeps that name and is not hashed again; the
 * others are named now (rrv_page_digests) and learnt. One table serves every process: a vfork
 * child's birth finds its parent's pages, a compiler's image the previous compiler's (no
 * address-space randomization). Past RRV_UNCHANGED_MAX entries it starts over. The table lived in a Python dict, walked page by page by the thread that
 * finishes checkpoints: holding the GIL for that walk, it took the GIL from the tracer's
 * thread thousands of times a recording. Here every run a checkpoint read is named in one
 * call (rrv_name_runs), made without the GIL.
 *
 * An open-addressing table, grown at half full; entries are never removed but all at once.
 * One thread uses a table at a time (the finisher, or a tracer thread while the finisher is
 * drained). */
#include <stdlib.h>

struct unchanged_slot {
  uint64_t key;      /* the page's address + 1; 0: free */
  uint64_t fast;     /* ...and its bytes' fast hash */
  uint8_t name[16];
};

#define RRV_UNCHANGED_MAX (1u << 20)    /* 32 MiB of entries (64 MiB of table) */

struct rrv_unchanged {
  size_t cap, used;   /* cap: a power of two */
  struct unchanged_slot *slots;
};

struct rrv_unchanged *rrv_unchanged_new(void) {
  struct rrv_unchanged *u = calloc(1, sizeof *u);
  if (!u) return NULL;
  u->cap = 1024;
  u->slots = calloc(u->cap, sizeof *u->slots);
  if (!u->slots) {
    free(u);
    return NULL;
  }
  return u;
}

void rrv_unchanged_free(struct rrv_unchanged *u) {
  if (!u) return;
  free(u->slots);
  free(u);
}

static size_t unchanged_home(const struct rrv_unchanged *u, uint64_t key, uint64_t fast) {
  return (size_t)((((key >> 12) ^ fast) * 0x9e3779b97f4a7c15ull) >> 20) & (u->cap - 1);
}

/* The slot of (key, fast), or the free slot where it would go. */
static struct unchanged_slot *unchanged_find(struct rrv_unchanged *u, uint64_t key,
                                             uint64_t fast) {
  for (size_t i = unchanged_home(u, key, fast);; i = (i + 1) & (u->cap - 1))
    if ((u->slots[i].key == key && u->slots[i].fast == fast) || u->slots[i].key == 0)
      return &u->slots[i];
}

static int unchanged_grow(struct rrv_unchanged *u) {
  struct rrv_unchanged bigger = {u->cap * 2, 0, calloc(u->cap * 2, sizeof *u->slots)};
  if (!bigger.slots) return -1;
  for (size_t i = 0; i < u->cap; i++)
    if (u->slots[i].key) {
      *unchanged_find(&bigger, u->slots[i].key, u->slots[i].fast) = u->slots[i];
      bigger.used++;
    }
  free(u->slots);
  *u = bigger;
  return 0;
}

/* names[16 * i] gets the name of page i of the npages pages of data, read from addr; changed[]
 * the indexes, in order, of the pages named now (every page if u is NULL), which u learns.
 * Returns how many were named now, or -1 (out of memory; libcrypto failed). */
static int64_t rrv_name_pages(struct rrv_unchanged *u, uint64_t addr, const uint8_t *data,
                              size_t npages, uint8_t *names, uint32_t *changed) {
  uint64_t *fast = malloc((npages ? npages : 1) * sizeof *fast);
  if (!fast) return -1;
  rrv_page_hashes(data, npages, fast);
  size_t nchanged = 0;
  for (size_t i = 0; i < npages; i++) {
    struct unchanged_slot *s = u ? unchanged_find(u, addr + i * 4096 + 1, fast[i]) : NULL;
    if (s && s->key)
      memcpy(names + 16 * i, s->name, 16);
    else
      changed[nchanged++] = (uint32_t)i;
  }
  int64_t rc = (int64_t)nchanged;
  uint8_t *fresh = malloc((nchanged ? nchanged : 1) * 16);
  if (!fresh || rrv_page_digests(data, changed, nchanged, fresh) < 0) {
    rc = -1;
    goto out;
  }
  for (size_t k = 0; k < nchanged; k++) {
    uint32_t i = changed[k];
    memcpy(names + 16 * i, fresh + 16 * k, 16);
    if (!u) continue;
    if (u->used >= RRV_UNCHANGED_MAX) {     /* a long recording's churn: start over */
      memset(u->slots, 0, u->cap * sizeof *u->slots);
      u->used = 0;
    }
    if ((u->used + 1) * 2 > u->cap && unchanged_grow(u) < 0) {
      rc = -1;
      goto out;
    }
    struct unchanged_slot *s = unchanged_find(u, addr + (uint64_t)i * 4096 + 1, fast[i]);
    if (!s->key) {
      s->key = addr + (uint64_t)i * 4096 + 1;
      s->fast = fast[i];
      u->used++;
    }
    memcpy(s->name, fresh + 16 * k, 16);
  }
out:
  free(fresh);
  free(fast);
  return rc;
}

/* rrv_name_pages for nruns runs at once (one call, one release of the GIL, per checkpoint):
 * run r's names go to names + 16 * (the pages of the runs before it), its changed indexes to
 * changed + (the changed of the runs before it), their count to nchanged[r]. Returns the
 * total named now, or -1. */
int64_t rrv_name_runs(struct rrv_unchanged *u, size_t nruns, const uint64_t *addrs,
                      const uint8_t *const *datas, const uint64_t *npages, uint8_t *names,
                      uint32_t *changed, uint64_t *nchanged) {
  int64_t total = 0;
  size_t at = 0;
  for (size_t r = 0; r < nruns; r++) {
    int64_t n = rrv_name_pages(u, addrs[r], datas[r], npages[r], names + 16 * at,
                               changed + total);
    if (n < 0) return -1;
    nchanged[r] = (uint64_t)n;
    total += n;
    at += npages[r];
  }
  return total;
}
