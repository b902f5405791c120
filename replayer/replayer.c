/* replayer.c: the native replay loop. The tracee re-executes its own code; at every stop the
 * next recorded event says what must happen, and every check of docs/checks.md runs before
 * the recorded effect is injected. Emulated syscalls cost one seccomp stop. */

#define RRV_EFLAGS_RF 0x10000ull

static const struct rrv_event *cur_event(struct rrv_replayer *r) {
  return (const struct rrv_event *)(r->events + r->pos);
}

static int have_events(struct rrv_replayer *r, int count) {
  size_t pos = r->pos;
  for (int i = 0; i < count; i++) {
    if (pos + sizeof(struct rrv_event) > r->len) return 0;
    const struct rrv_event *ev = (const struct rrv_event *)(r->events + pos);
    if (ev->size < sizeof *ev || ev->size % 8 || pos + ev->size > r->len) return 0;
    pos += ev->size;
  }
  return 1;
}

static const struct rrv_event *next_event(struct rrv_replayer *r) {
  const struct rrv_event *ev = cur_event(r);
  if (r->pos + ev->size + sizeof(struct rrv_event) > r->len) return NULL;
  return (const struct rrv_event *)(r->events + r->pos + ev->size);
}

static void advance(struct rrv_replayer *r) {
  r->pos += cur_event(r)->size;
  r->event_index++;
}

/* A signal a trace may name: 1-64. */
#define RRV_SIGNAL_NUMBER(n) ((n) >= 1 && (n) <= 64)

static int diverge(struct rrv_replayer *r, int kind, const char *fmt, ...) {
  r->div.kind = kind;
  r->div.event_index = r->event_index;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->div.detail, sizeof r->div.detail, fmt, ap);
  va_end(ap);
  return RRV_STOP_DIVERGED;
}

static int rfail(struct rrv_replayer *r, const char *what) {
  snprintf(r->message, sizeof r->message, "%s: %s", what, strerror(errno));
  return RRV_STOP_ERROR;
}

/* Registers must be equal except the resume flag, which the kernel sets or clears on its own
 * when it returns from a trap. */
static int regs_match(const struct rrv_regs *a, const struct rrv_regs *b) {
  struct rrv_regs x = *a, y = *b;
  x.eflags &= ~RRV_EFLAGS_RF;
  y.eflags &= ~RRV_EFLAGS_RF;
  return memcmp(&x, &y, sizeof x) == 0;
}

static int check_state(struct rrv_replayer *r, const struct rrv_event *ev,
                       const struct rrv_regs *regs) {
  r->div.expected_regs = ev->regs;
  r->div.found_regs = *regs;
  if (!regs_match(regs, &ev->regs))
    return diverge(r, RRV_DIV_REGS, "registers differ");
  uint64_t fpu = 0;
  if (rrv_fpu_digest(r->pid, &fpu) < 0) return rfail(r, "reading FPU state");
  if (fpu != ev->fpu_digest) {
    r->div.expected_fpu = ev->fpu_digest;
    r->div.found_fpu = fpu;
    return diverge(r, RRV_DIV_FPU, "x87/SSE/AVX register state differs");
  }
  return 0;
}

static int expect_kind(struct rrv_replayer *r, const struct rrv_event *ev, int kind,
                       int64_t found_nr) {
  if (ev->kind == kind) return 0;
  if (ev->kind < RRV_EVENT_SYSCALL || ev->kind > RRV_EVENT_UNWIND)
    return diverge(r, RRV_DIV_TRACE, "unknown event kind %d", ev->kind);
  r->div.expected_kind = ev->kind;
  r->div.found_kind = kind;
  r->div.expected_nr = ev->nr;
  r->div.found_nr = found_nr;
  return diverge(r, RRV_DIV_EVENT_KIND, "a different event happened");
}

/* Inject the recorded memory writes of an event. */
static int apply_writes(struct rrv_replayer *r, const struct rrv_event *ev) {
  const uint8_t *p = (const uint8_t *)(ev + 1);
  const uint8_t *end = (const uint8_t *)ev + ev->size;
  for (int i = 0; i < ev->nwrites; i++) {
    if (p + sizeof(struct rrv_write) > end) return diverge(r, RRV_DIV_TRACE, "event truncated");
    const struct rrv_write *w = (const struct rrv_write *)p;
    const uint8_t *data;
    if (w->how != RRV_WRITE_INLINE && w->how != RRV_WRITE_BLOB)
      return diverge(r, RRV_DIV_TRACE, "unknown memory-write kind %u", w->how);
    size_t len = w->len, stored = w->how == RRV_WRITE_BLOB ? RRV_DIGEST_BYTES : RRV_ALIGN8(len);
    if (p + sizeof *w + stored > end) return diverge(r, RRV_DIV_TRACE, "event truncated");
    if (w->how == RRV_WRITE_BLOB) {
      size_t blen = 0;
      if (rrv_py_blob_get(r->handle, p + sizeof *w, &data, &blen)) {
        snprintf(r->message, sizeof r->message, "cannot read a blob of event %llu",
                 (unsigned long long)r->event_index);
        return RRV_STOP_ERROR;   /* the callback's TraceError is what the driver raises */
      }
      if (blen != len)
        return diverge(r, RRV_DIV_TRACE, "a blob holds %zu bytes, the event says %zu", blen, len);
    } else {
      data = p + sizeof *w;
    }
    if (rrv_write_mem(r->pid, w->addr, data, len) != (ssize_t)len) {
      r->div.expected_value = w->addr;
      r->div.found_value = 0;
      return diverge(r, RRV_DIV_DATA, "the recording wrote %zu bytes at 0x%llx, which replay "
                     "does not have mapped", len, (unsigned long long)w->addr);
    }
    p += sizeof *w + stored;
  }
  return 0;
}

static int replay_sent_data(struct rrv_replayer *r, const struct rrv_syscall_spec *spec,
                            const struct rrv_regs *a, const struct rrv_event *ev) {
  if (ev->result <= 0 || !rrv_sends_data(spec)) return 0;   /* aux means something else */
  int fd = (int)a->rdi;
  int echo = r->echo && (fd == 1 || fd == 2) &&
             (ev->nr == SYS_write || ev->nr == SYS_writev) ? fd : -1;
  uint64_t d = rrv_sent_digest(r->pid, spec, a, ev->result, echo);
  if (d != ev->aux) {
    r->div.expected_value = ev->aux;
    r->div.found_value = d;
    return diverge(r, RRV_DIV_DATA, "the data %s sends differs from the recording", spec->name);
  }
  return 0;
}

/* Does the segment end at the syscall-exit stop the tracee is at (or will reach next)? Not
 * for a checkpoint taken before an exit: that one ends at the exit's entry. */
static int segment_ends_here(const struct rrv_replayer *r) {
  return r->event_index == r->stop_at_event && !r->stop_before_exit;
}

/* A recorded write to a file the tracee had mapped shared (recorder.c:
 * shared_mapping_of_write): the data the program writes now goes into the file that stands for
 * it in replay, a memfd (replay and restore map recorded files from memfds), reached through
 * /proc/PID/map_files of the recorded mapping, so that every mapping of it shows the data. */
static int write_to_mapped_file(struct rrv_replayer *r, const struct rrv_event *ev,
                                const struct rrv_regs *a) {
  struct rrv_file_write fw;
  memcpy(&fw, (const uint8_t *)ev + ev->size - RRV_ALIGN8(ev->extra_len), sizeof fw);
  char path[96], line[512];
  snprintf(path, sizeof path, "/proc/%d/maps", r->pid);
  FILE *maps = fopen(path, "re");
  unsigned long long lo = 0, hi = 0;
  int found = 0;
  while (maps && !found && fgets(line, sizeof line, maps))
    found = sscanf(line, "%llx-%llx", &lo, &hi) == 2 && lo == fw.mapping;
  if (maps) fclose(maps);
  snprintf(path, sizeof path, "/proc/%d/map_files/%llx-%llx", r->pid, lo, hi);
  int fd = found ? open(path, O_WRONLY | O_CLOEXEC) : -1;
  if (fd < 0) {
    r->div.expected_value = fw.mapping;
    return diverge(r, RRV_DIV_DATA, "the recording wrote to the file mapped at 0x%llx, which "
                   "replay does not have mapped", (unsigned long long)fw.mapping);
  }
  uint64_t addrs[1024], lens[1024];
  int n = 1;
  addrs[0] = a->rsi;
  lens[0] = ev->result;
  if (ev->nr == SYS_writev || ev->nr == SYS_pwritev || ev->nr == SYS_pwritev2)
    n = rrv_read_iovecs(r->pid, a->rsi, a->rdx, ev->result, addrs, lens, 1024);
  static uint8_t chunk[1 << 16];
  uint64_t off = fw.offset;
  int rc = n < 0 ? -1 : 0;
  for (int i = 0; i < n && !rc; i++)
    for (uint64_t done = 0; done < lens[i] && !rc; ) {
      size_t len = lens[i] - done < sizeof chunk ? lens[i] - done : sizeof chunk;
      if (rrv_read_mem(r->pid, addrs[i] + done, chunk, len) != (ssize_t)len ||
          pwrite(fd, chunk, len, off) != (ssize_t)len)
        rc = -1;
      done += len;
      off += len;
    }
  close(fd);
  return rc < 0 ? rfail(r, "writing to a file the tracee maps shared") : 0;
}

/* The syscall at this seccomp stop is not run: the recorded result and writes are injected. */
/* A read or write through a pipe: the hash the trace holds for it (which the cross-process
 * check compares with the other end's, replayer/crossprocess.py) must be the hash of the bytes
 * this replay wrote or had injected. */
static int check_pipe_io(struct rrv_replayer *r, const struct rrv_event *ev,
                         const struct rrv_regs *regs) {
  size_t n = ev->extra_len / sizeof(struct rrv_pipe_io);
  if (!n || n > 2 || ev->extra_len % sizeof(struct rrv_pipe_io))
    return diverge(r, RRV_DIV_TRACE, "bad pipe record");
  struct rrv_pipe_io io[2];
  memcpy(io, (const uint8_t *)ev + ev->size - RRV_ALIGN8(ev->extra_len), n * sizeof io[0]);
  int reads = ev->nr == SYS_read || ev->nr == SYS_readv,
      writes = ev->nr == SYS_write || ev->nr == SYS_writev;
  /* As the recorder writes them (tracee.c: pipe_io_of): one record for read and write, of
   * their direction or untracked; only untracked ones for the others (splice, tee...). */
  for (size_t i = 0; i < n; i++)
    if (io[i].direction != RRV_PIPE_UNTRACKED &&
        !(n == 1 && ((reads && io[i].direction == RRV_PIPE_READ) ||
                     (writes && io[i].direction == RRV_PIPE_WRITE))))
      return diverge(r, RRV_DIV_TRACE, "bad pipe record");
  if ((reads || writes) && n != 1) return diverge(r, RRV_DIV_TRACE, "bad pipe record");
  if (io[0].direction == RRV_PIPE_UNTRACKED) return 0;
  uint64_t h;
  if (rrv_pipe_io_hash(r->pid, ev->nr, regs, ev->result, &h) < 0 || h != io[0].hash) {
    r->div.expected_value = io[0].hash;
    r->div.found_value = h;
    return diverge(r, RRV_DIV_DATA, "the bytes %s through a pipe differ from the hash the trace "
                   "holds for them", reads ? "read" : "written");
  }
  return 0;
}

static int emulate(struct rrv_replayer *r, const struct rrv_event *ev, const struct rrv_regs *regs) {
  const struct rrv_event *next = next_event(r);
  int signal_at_exit = next && next->kind == RRV_EVENT_SIGNAL &&
                       (next->flags & RRV_EF_AT_SYSCALL_EXIT);
  int stop_at_exit = signal_at_exit || (r->event_index + 1 == r->stop_at_event &&
                                        !r->stop_before_exit);
  /* The vsyscall page's syscalls have no syscall exit (recorder.c: answer_vsyscall). */
  if (stop_at_exit && regs->rip >= RRV_VSYSCALL_PAGE && regs->rip < RRV_VSYSCALL_PAGE + 4096)
    return diverge(r, RRV_DIV_TRACE, "the trace stops at the exit of a vsyscall, which has none");
  struct rrv_regs emulated = *regs;
  emulated.orig_rax = -1;
  emulated.rax = ev->result;
  if (rrv_setregs(r->pid, &emulated) < 0) return rfail(r, "PTRACE_SETREGS");
  int rc = apply_writes(r, ev);
  if (rc) return rc;
  if (ev->flags & RRV_EF_PIPE) {
    if ((rc = check_pipe_io(r, ev, regs))) return rc;
  } else if (ev->extra_len == sizeof(struct rrv_file_write) && ev->result > 0 &&
             (rc = write_to_mapped_file(r, ev, regs))) {
    return rc;
  }
  r->syscalls_emulated++;
  r->last_nr = (int64_t)regs->orig_rax;
  advance(r);
  /* Stop again at this syscall's exit to inject a signal there or to end the segment. */
  if (stop_at_exit) r->resume_op = PTRACE_SYSCALL;
  return 0;
}

/* A signal the recording held while the process ran user code and delivered at this syscall's
 * entry (recorder.c: deliver_held_signal): the same here. The syscall is skipped and set to
 * restart after the handler; the signal's delivery stop is then checked as any other. */
static int replay_signal_at_entry(struct rrv_replayer *r, const struct rrv_event *ev,
                                  const struct rrv_regs *regs) {
  if (!RRV_SIGNAL_NUMBER(ev->nr) || ev->nr == SIGKILL || ev->nr == SIGSTOP)
    return diverge(r, RRV_DIV_TRACE, "signal %d cannot be held and delivered at a syscall's "
                   "entry", ev->nr);
  if ((int64_t)ev->regs.orig_rax != (int64_t)regs->orig_rax) {
    r->div.expected_nr = ev->regs.orig_rax;
    r->div.found_nr = regs->orig_rax;
    r->div.expected_regs = ev->regs;
    r->div.found_regs = *regs;
    return diverge(r, RRV_DIV_SYSCALL, "signal %d was delivered at the entry of a different "
                   "syscall", ev->nr);
  }
  struct rrv_regs restart = *regs;
  restart.rax = -513;   /* -ERESTARTNOINTR: issued again after the handler */
  int status;
  int skipped = rrv_skip_syscall(r->pid, &restart, &status);
  if (skipped == -2)
    return diverge(r, RRV_DIV_EXITED_EARLY, "the tracee died (status 0x%x)", status);
  if (skipped < 0) return rfail(r, "skipping a syscall");
  r->resume_sig = ev->nr;
  return 0;
}

static int check_breakpoint_clear(struct rrv_replayer *r, const char *where);

/* The segment ends here, at its checkpoint, where no syscall breakpoint may be armed. */
static int segment_end(struct rrv_replayer *r) {
  int rc = check_breakpoint_clear(r, "at a checkpoint");
  return rc ? rc : RRV_STOP_SEGMENT_END;
}

/* ---- syscall buffering: the syscall breakpoint (docs/checks.md, "Syscall buffering") ---- */

static const struct rrv_buffered_syscall *flush_record(const struct rrv_replayer *r) {
  return (const struct rrv_buffered_syscall *)(r->events + r->pos + r->flush_record);
}

/* The syscall breakpoint: an int3 over the untraced `syscall` instruction's first byte, in the
 * replayed process's own syscall page (a hardware breakpoint would do, but its debug exception
 * costs tens of microseconds on a VM; an int3 does not). */
static int set_breakpoint(struct rrv_replayer *r, int armed) {
  uint8_t byte = armed ? 0xcc : 0x0f;
  if (rrv_write_mem(r->pid, RRV_UNTRACED_SYSCALL, &byte, 1) != 1)
    return rfail(r, "setting the syscall breakpoint");
  r->armed = armed;
  return 0;
}

/* Check: no breakpoint is armed in the tracee (the syscall instruction whole, no debug
 * register set), where none may be. */
static int check_breakpoint_clear(struct rrv_replayer *r, const char *where) {
  uint64_t dr7 = 0, dr6 = 0;
  uint8_t byte = 0;
  if (rrv_debug_state(r->pid, &dr7, &dr6) < 0) return rfail(r, "reading the debug registers");
  rrv_read_mem(r->pid, RRV_UNTRACED_SYSCALL, &byte, 1);
  r->breakpoint_checks++;
  if ((dr7 & 0xff) || byte == 0xcc)
    return diverge(r, RRV_DIV_SYSCALLBUF, "syscallbuf-breakpoint-clear: the syscall breakpoint "
                   "is still armed %s", where);
  return 0;
}

/* Arm the syscall breakpoint (r->armed set by the caller: wanted), unless SIGTRAP is blocked or
 * ignored now: the breakpoint's SIGTRAP is forced, and the kernel would then unblock it and
 * reset its action at each hit, changing the program. Then the buffered syscalls are met at
 * their seccomp stops instead (replay_buffered_at_entry), a stop more each. (Within a flush
 * only a buffered rt_sigaction can change it: the mask changes through traced syscalls.) */
static int disarm_if_trap_would_change(struct rrv_replayer *r) {
  uint64_t caught = 0, ignored = 0, blocked = 0;
  if (rrv_signal_sets(r->pid, &caught, &ignored, &blocked) < 0)
    return rfail(r, "reading the tracee's signal dispositions");
  return set_breakpoint(r, !(((blocked | ignored) >> (SIGTRAP - 1)) & 1));
}

/* The current event is a FLUSH not yet begun: its records are checked (a malformed one, or one
 * of a syscall the preload never buffers, is a trace error naming it), and the breakpoint
 * armed for the first. */
static int begin_flush(struct rrv_replayer *r) {
  const struct rrv_event *ev = cur_event(r);
  size_t extra = r->pos + ev->size - RRV_ALIGN8(ev->extra_len);
  size_t end = extra + ev->extra_len;
  uint32_t count = 0;
  char why[160];
  for (size_t pos = extra; pos < end; count++) {
    size_t size = buffered_record_size(r->events + pos, end - pos, 0, why, sizeof why);
    if (!size)
      return diverge(r, RRV_DIV_TRACE, "flush event %llu, buffered syscall %u: %s",
                     (unsigned long long)r->event_index, count, why);
    int32_t nr = ((const struct rrv_buffered_syscall *)(r->events + pos))->nr;
    if (!is_buffered_number(nr) || !rrv_syscalls[nr].handling)
      return diverge(r, RRV_DIV_TRACE, "flush event %llu, buffered syscall %u: syscall %d, "
                     "which the preload never buffers", (unsigned long long)r->event_index,
                     count, nr);
    pos += size;
  }
  if (count != (uint32_t)ev->nr || !count || ev->extra_len > r->len)
    return diverge(r, RRV_DIV_TRACE, "flush event %llu says %d buffered syscalls and holds %u",
                   (unsigned long long)r->event_index, ev->nr, count);
  r->flushing = 1;
  r->flush_record = extra - r->pos;
  r->flush_left = count;
  r->flush_index = r->event_index;
  r->flushes++;
  r->armed = 1;
  return disarm_if_trap_would_change(r);
}

/* A stop other than the breakpoint's while a FLUSH is the current event: the flush ends here,
 * as it did in the recording (which flushes only at stops that record an event). Every record
 * must have been hit, the breakpoint be clear, and the preload's buffer hold as many bytes as
 * the recording's did; then the buffer is emptied as the recording emptied it. `inexact`: the
 * process dies at a point replay cannot reach (the buffer is not compared). */
static int end_flush(struct rrv_replayer *r, int64_t traced_nr, int inexact) {
  const struct rrv_event *ev = cur_event(r);
  r->breakpoint_checks++;
  if (r->flush_left) {
    const struct rrv_buffered_syscall *rec = flush_record(r);
    r->div.expected_nr = rec->nr;
    r->div.found_nr = traced_nr;
    return diverge(r, RRV_DIV_SYSCALLBUF, "syscallbuf-missing-record: buffered syscall %u of %d "
                   "of flush event %llu (%s) was never made: the program reached %s first",
                   ev->nr - r->flush_left, ev->nr, (unsigned long long)r->flush_index,
                   rrv_syscall_name(rec->nr), traced_nr >= 0 ? rrv_syscall_name(traced_nr)
                                                            : "a stop that is no syscall");
  }
  int rc = check_breakpoint_clear(r, "at the end of a flush");
  if (rc) return rc;
  if (!inexact) {
    uint32_t held = 0;
    r->breakpoint_checks++;
    if (rrv_read_mem(r->pid, ev->aux, &held, sizeof held) != sizeof held || held != ev->result) {
      r->div.expected_value = ev->result;
      r->div.found_value = held;
      return diverge(r, RRV_DIV_SYSCALLBUF, "syscallbuf-flush-length: the preload's buffer at "
                     "0x%llx holds %u bytes of records at the flush, the recording's held %lld",
                     (unsigned long long)ev->aux, held, (long long)ev->result);
    }
    if ((rc = apply_writes(r, ev))) return rc;
  }
  r->flushing = 0;
  advance(r);
  return 0;
}

/* Does replay run this recorded syscall again (it changes the process itself: its memory map,
 * its signal actions, its exit), rather than emulate its result? The same answer whether it
 * was traced or buffered. */
static int replay_runs(const struct rrv_syscall_spec *spec, uint64_t arg0, int64_t result) {
  switch (spec->handling) {
    case RRV_H_EXECUTE: case RRV_H_EXIT: return 1;
    case RRV_H_EXECUTE_SELF: return arg0 == 0;
    case RRV_H_MMAP: case RRV_H_MREMAP: return result >= 0;
    default: return 0;
  }
}

/* A buffered syscall replay runs (replay_runs: of what begin_flush lets in, rt_sigaction,
 * brk and madvise, EXECUTE, and mmap), through the syscall page's traced instruction; its
 * arguments as recorded, an mmap at the address it got. Returns 0 or a divergence. */
static int run_buffered(struct rrv_replayer *r, const struct rrv_buffered_syscall *rec,
                        const struct rrv_syscall_spec *spec, unsigned k) {
  uint64_t a[6];
  memcpy(a, rec->args, sizeof a);
  if (spec->handling == RRV_H_MMAP) {
    if (!(a[3] & MAP_ANONYMOUS) || (a[3] & MAP_TYPE) != MAP_PRIVATE)
      return diverge(r, RRV_DIV_TRACE, "buffered syscall %u of flush event %llu maps a file or "
                     "shared memory, which the preload never buffers", k,
                     (unsigned long long)r->flush_index);
    a[0] = rec->result;
    a[3] = (a[3] | MAP_FIXED) & ~(uint64_t)MAP_FIXED_NOREPLACE;
  }
  int64_t result = 0;
  char why[160];
  int rc = rrv_inject_syscall(r->pid, RRV_TRACED_SYSCALL, rec->nr, a, &result, why, sizeof why);
  if (rc == -2) {
    r->div.expected_value = rec->result;
    return diverge(r, RRV_DIV_EXITED_EARLY, "the tracee died inside buffered syscall %u of "
                   "flush event %llu (%s; wait status 0x%llx)", k,
                   (unsigned long long)r->flush_index, spec->name, (unsigned long long)result);
  }
  if (rc < 0) {
    snprintf(r->message, sizeof r->message, "running buffered syscall %u of flush event %llu: "
             "%s", k, (unsigned long long)r->flush_index, why);
    return RRV_STOP_ERROR;
  }
  r->syscalls_executed++;
  if (result != rec->result) {
    r->div.expected_value = rec->result;
    r->div.found_value = result;
    return diverge(r, RRV_DIV_RESULT, "buffered syscall %u of flush event %llu (%s), run again, "
                   "returned a different result", k, (unsigned long long)r->flush_index,
                   spec->name);
  }
  return 0;
}

/* The flush's next record against the buffered syscall the program is making, from registers
 * `regs` (rip just past the untraced instruction's first byte, rax the number: as at the
 * breakpoint), checked, its writes injected, run again if replay runs it (then *ran is 1: the
 * tracee stands at that syscall's exit stop); `regs` become those the program goes on with.
 * Returns 0 or a divergence. */
static int replay_record(struct rrv_replayer *r, struct rrv_regs *regs_io, int *ran) {
  struct rrv_regs regs = *regs_io;
  const struct rrv_event *ev = cur_event(r);
  const struct rrv_buffered_syscall *rec = flush_record(r);
  unsigned k = ev->nr - r->flush_left;
  const uint64_t found[6] = {regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9};
  r->div.found_regs = regs;      /* where it stands, for the report: its stub's syscall */
  r->div.found_regs.rip = rec->site + RRV_STUB_SYSCALL;
  /* ...and the program's site the stub stands for, read only for a divergence: one syscall
   * less per buffered syscall */
#define DIVERGE_AT_SITE(...) \
  (rrv_read_mem(r->pid, regs.rcx + RRV_STUB_SITE, &r->div.site, sizeof r->div.site), \
   diverge(__VA_ARGS__))
  r->div.site = 0;
  r->div.expected_nr = rec->nr;
  r->div.found_nr = (int64_t)regs.rax;
  r->breakpoint_checks += 2;
  if (regs.rip != RRV_UNTRACED_SYSCALL + 1)     /* just past the int3 */
    return DIVERGE_AT_SITE(r, RRV_DIV_SYSCALLBUF, "syscallbuf-armed-with-records: the syscall "
                   "breakpoint stopped the program at 0x%llx", (unsigned long long)regs.rip);
  if ((int64_t)regs.rax != rec->nr || memcmp(found, rec->args, sizeof found))
    return DIVERGE_AT_SITE(
        r, RRV_DIV_SYSCALLBUF, "syscallbuf-record-syscall: buffered syscall %u of "
        "flush event %llu is %s(0x%llx, 0x%llx, 0x%llx, ...), the program made "
        "%s(0x%llx, 0x%llx, 0x%llx, ...)", k, (unsigned long long)r->flush_index,
        rrv_syscall_name(rec->nr), (unsigned long long)rec->args[0],
        (unsigned long long)rec->args[1], (unsigned long long)rec->args[2],
        rrv_syscall_name((int64_t)regs.rax), (unsigned long long)found[0],
        (unsigned long long)found[1], (unsigned long long)found[2]);
  if (regs.rcx != rec->site) {
    r->div.expected_value = rec->site;
    r->div.found_value = regs.rcx;
    return DIVERGE_AT_SITE(
        r, RRV_DIV_SYSCALLBUF, "syscallbuf-record-site: buffered syscall %u of flush "
        "event %llu (%s) came through the stub at 0x%llx, the program's through 0x%llx",
        k, (unsigned long long)r->flush_index, rrv_syscall_name(rec->nr),
        (unsigned long long)rec->site, (unsigned long long)regs.rcx);
  }
  const struct rrv_syscall_spec *spec = &rrv_syscalls[rec->nr];
  struct rrv_regs call = regs;
  call.orig_rax = rec->nr;
  if (rec->flags & RRV_BF_SENT) {
    int fd = (int)rec->args[0];
    int echo = r->echo && (fd == 1 || fd == 2) && (rec->nr == SYS_write || rec->nr == SYS_writev)
                   ? fd : -1;
    uint64_t d = rrv_sent_digest(r->pid, spec, &call, rec->result, echo);
    r->breakpoint_checks++;
    if (d != rec->sent_digest) {
      r->div.expected_value = rec->sent_digest;
      r->div.found_value = d;
      return DIVERGE_AT_SITE(
          r, RRV_DIV_DATA, "the data buffered syscall %u of flush event %llu (%s) "
          "sends differs from the recording", k, (unsigned long long)r->flush_index,
          spec->name);
    }
  }
  *ran = 0;
  if (replay_runs(spec, rec->args[0], rec->result)) {
    int rc = run_buffered(r, rec, spec, k);
    if (rc == RRV_STOP_DIVERGED)
      rrv_read_mem(r->pid, regs.rcx + RRV_STUB_SITE, &r->div.site, sizeof r->div.site);
    if (rc) return rc;
    *ran = 1;
    /* SIGTRAP's action just set (to SIG_IGN?): the breakpoint's forced SIGTRAP must not
     * meet it (begin_flush); the flush's other records come at their seccomp stops */
    if (rec->nr == SYS_rt_sigaction && (int)rec->args[0] == SIGTRAP && rec->args[1] &&
        r->armed && (rc = disarm_if_trap_would_change(r)))
      return rc;
  }
  /* Its writes, as a traced syscall's are injected */
  const uint8_t *p = (const uint8_t *)(rec + 1);
  for (unsigned i = 0; i < rec->nwrites; i++) {
    const struct rrv_write *w = (const struct rrv_write *)p;
    if (rrv_write_mem(r->pid, w->addr, p + sizeof *w, w->len) != (ssize_t)w->len) {
      r->div.expected_value = w->addr;
      return DIVERGE_AT_SITE(
          r, RRV_DIV_DATA, "buffered syscall %u of flush event %llu wrote %u bytes "
          "at 0x%llx, which replay does not have mapped", k,
          (unsigned long long)r->flush_index, w->len, (unsigned long long)w->addr);
    }
    p += sizeof *w + RRV_ALIGN8((size_t)w->len);
  }
  if (rec->flags & RRV_BF_PIPE) {   /* the pipe's bytes, as a traced read's or write's */
    struct rrv_pipe_io io;
    memcpy(&io, p, sizeof io);
    uint64_t h = 0;
    r->breakpoint_checks++;
    if (rrv_pipe_io_hash(r->pid, rec->nr, &call, rec->result, &h) < 0 || h != io.hash) {
      r->div.expected_value = io.hash;
      r->div.found_value = h;
      return DIVERGE_AT_SITE(
          r, RRV_DIV_DATA, "the bytes buffered syscall %u of flush event %llu (%s) "
          "%s through a pipe differ from the hash the trace holds for them", k,
          (unsigned long long)r->flush_index, rrv_syscall_name(rec->nr),
          io.direction == RRV_PIPE_READ ? "read" : "written");
    }
  }
  regs.rax = rec->result;
  regs.rip = RRV_UNTRACED_SYSCALL + 2;
  regs.rcx = regs.rip;               /* as the kernel leaves them after a syscall */
  regs.r11 = regs.eflags;
  regs.orig_rax = (uint64_t)-1;
  *regs_io = regs;
  r->div.site = 0;               /* checked: no later divergence is about this site */
  r->flush_record += rec->size;
  r->flush_left--;
  r->buffered_syscalls++;
  return 0;
#undef DIVERGE_AT_SITE
}

/* The syscall breakpoint fired: the flush's next record is replayed in the syscall's place. */
static int replay_buffered_hit(struct rrv_replayer *r, struct rrv_regs regs) {
  if (!r->armed || !r->flushing || !r->flush_left)
    return diverge(r, RRV_DIV_SYSCALLBUF, "syscallbuf-armed-with-records: the syscall "
                   "breakpoint fired with no buffered syscall left to replay");
  int ran, rc = replay_record(r, &regs, &ran);
  if (rc) return rc;
  if (rrv_setregs(r->pid, &regs) < 0) return rfail(r, "injecting a buffered syscall");
  if (!r->flush_left) return set_breakpoint(r, 0);   /* armed only while records remain */
  return 0;
}

/* A flush replayed without the breakpoint (begin_flush: SIGTRAP blocked or ignored): its
 * buffered syscall arrives at its seccomp stop, and is replayed there, never run as it
 * stands: skipped, or run again through the traced instruction (replay_runs). */
static int replay_buffered_at_entry(struct rrv_replayer *r, struct rrv_regs regs) {
  struct rrv_regs hit = regs;
  hit.rax = regs.orig_rax;
  hit.rip = RRV_UNTRACED_SYSCALL + 1;
  /* The `syscall` overwrote rcx, where the hook put its stub: the hook's frame still says */
  struct rrv_syscallbuf_hdr h;
  struct rrv_hook_frame f;
  if (rrv_read_mem(r->pid, cur_event(r)->aux, &h, sizeof h) != sizeof h || !h.in_hook ||
      rrv_read_mem(r->pid, h.frame, &f, sizeof f) != sizeof f)
    return diverge(r, RRV_DIV_SYSCALLBUF, "syscallbuf-record-site: the program made a "
                   "buffered syscall outside the preload's hook (its buffer at 0x%llx says "
                   "none is under way)", (unsigned long long)cur_event(r)->aux);
  hit.rcx = f.ret - RRV_STUB_CALL_RETURN;
  r->breakpoint_checks++;
  int ran, rc = replay_record(r, &hit, &ran);
  if (rc) return rc;
  if (ran) {           /* at the exit stop of the syscall run in its place */
    if (rrv_setregs(r->pid, &hit) < 0) return rfail(r, "replaying a buffered syscall");
    return 0;
  }
  int status;
  int prc = rrv_skip_syscall(r->pid, &hit, &status);
  if (prc == -2) {
    r->div.expected_value = 0;
    return diverge(r, RRV_DIV_EXITED_EARLY, "the tracee died at a buffered syscall (status "
                   "0x%x)", status);
  }
  return prc < 0 ? rfail(r, "skipping a buffered syscall") : 0;
}

/* Is the tracee's SIGTRAP the syscall breakpoint's (an int3, at the untraced instruction)? */
static int syscall_breakpoint_hit(struct rrv_replayer *r, struct rrv_regs *regs) {
  siginfo_t si;
  return ptrace(PTRACE_GETSIGINFO, r->pid, 0, &si) == 0 && si.si_code == SI_KERNEL &&
         rrv_getregs(r->pid, regs) == 0 && regs->rip == RRV_UNTRACED_SYSCALL + 1;
}

/* A syscall site patched in the recording (recorder.c: rrv_record_patch_sites), with the other
 * sites patched with it: patched here too, and the syscall sent back to its site, to be made
 * again through the stub. */
static int replay_patch(struct rrv_replayer *r, const struct rrv_regs *regs) {
  const struct rrv_event *ev = cur_event(r);
  int rc = check_state(r, ev, regs);
  if (rc) return rc;
  if (ev->aux != regs->rip - 2)
    return diverge(r, RRV_DIV_TRACE, "patch event %llu names site 0x%llx, not this syscall's",
                   (unsigned long long)r->event_index, (unsigned long long)ev->aux);
  if ((rc = apply_writes(r, ev))) return rc;
  struct rrv_regs after = *regs;
  after.rip = ev->aux;
  after.rax = regs->orig_rax;
  after.orig_rax = (uint64_t)-1;
  int status;
  int skipped = rrv_skip_syscall(r->pid, &after, &status);
  if (skipped == -2) return diverge(r, RRV_DIV_EXITED_EARLY, "the tracee died (status 0x%x)", status);
  if (skipped < 0) return rfail(r, "returning a patched syscall to its site");
  advance(r);
  return 0;
}

static int replay_syscall(struct rrv_replayer *r) {
  struct rrv_regs regs;
  if (rrv_getregs(r->pid, &regs) < 0) return rfail(r, "PTRACE_GETREGS");
  int64_t nr = (int64_t)regs.orig_rax;
  int rc;
  if (r->flushing && r->flush_left && !r->armed && regs.rip == RRV_UNTRACED_SYSCALL + 2)
    return replay_buffered_at_entry(r, regs);
  if (cur_event(r)->kind == RRV_EVENT_FLUSH && (rc = end_flush(r, nr, 0))) return rc;
  if (!have_events(r, 1)) return RRV_STOP_END_OF_TRACE;
  const struct rrv_event *ev = cur_event(r);
  if (regs.rip == RRV_UNTRACED_SYSCALL + 2) {  /* a buffered syscall the breakpoint let by */
    r->breakpoint_checks++;
    if (ev->kind == RRV_EVENT_UNWIND) {
      /* moved out of the preload in the recording (to deliver a signal): the same here
       * (syscallbuf.c), and the stop goes on as this syscall's, at its stub */
      char why[160];
      struct rrv_regs unwound = regs;
      if (rrv_syscallbuf_unwind(r->pid, ev->aux, &unwound, why, sizeof why) < 0)
        return diverge(r, RRV_DIV_SYSCALLBUF, "syscallbuf-unwind: %s", why);
      r->div.expected_regs = ev->regs;
      r->div.found_regs = unwound;
      if (!regs_match(&unwound, &ev->regs))
        return diverge(r, RRV_DIV_SYSCALLBUF, "syscallbuf-unwind: the buffered syscall unwound "
                       "to other registers than the recording's");
      if (rrv_setregs(r->pid, &unwound) < 0) return rfail(r, "PTRACE_SETREGS");
      advance(r);
      if (!have_events(r, 1)) return RRV_STOP_END_OF_TRACE;
      regs = unwound;
      ev = cur_event(r);
    } else if (ev->kind == RRV_EVENT_SIGNAL && (ev->flags & RRV_EF_AT_SYSCALL_ENTRY)) {
      /* delivered right there, inside the preload, by a recorder that broke the invariant:
       * replayed as recorded, for the invariant check to report (syscallbuf_invariant.py) */
      return replay_signal_at_entry(r, ev, &regs);
    } else {
      r->div.found_nr = nr;
      return diverge(r, RRV_DIV_SYSCALLBUF, "syscallbuf-extra-record: the program made "
                     "buffered syscall %s (through the stub at 0x%llx) that the recording has "
                     "no record of", rrv_syscall_name(nr), (unsigned long long)regs.rcx);
    }
  } else if (ev->kind == RRV_EVENT_UNWIND) {
    return diverge(r, RRV_DIV_SYSCALLBUF, "syscallbuf-unwind: the recording moved a buffered "
                   "syscall out of the preload here, the program made %s through ptrace",
                   rrv_syscall_name(nr));
  }
  if (ev->kind == RRV_EVENT_PATCH) return replay_patch(r, &regs);
  if (ev->kind == RRV_EVENT_SIGNAL && (ev->flags & RRV_EF_AT_SYSCALL_ENTRY))
    return replay_signal_at_entry(r, ev, &regs);
  rc = expect_kind(r, ev, RRV_EVENT_SYSCALL, nr);
  if (rc) return rc;
  if (ev->nr != nr) {
    r->div.expected_nr = ev->nr;
    r->div.found_nr = nr;
    r->div.expected_regs = ev->regs;
    r->div.found_regs = regs;
    return diverge(r, RRV_DIV_SYSCALL, "a different syscall was made");
  }
  if ((rc = check_state(r, ev, &regs))) return rc;
  if (ev->flags & RRV_EF_REFUSED) return emulate(r, ev, &regs);   /* never run, any number */
  if (nr < 0 || nr >= RRV_NSYSCALLS || !rrv_syscalls[nr].handling)
    return diverge(r, RRV_DIV_TRACE, "the trace holds syscall %lld, which this rrverify's "
                   "syscall table does not know", (long long)nr);
  const struct rrv_syscall_spec *spec = &rrv_syscalls[nr];
  if (r->stop_before_exit && r->event_index == r->stop_at_event) {
    /* The final checkpoint: the recorder parked the process before this exit (see
     * rrv_park_before_syscall); so does replay, and the comparison runs. Resumed, the
     * process issues the exit again and it is replayed as any event. */
    if (spec->handling != RRV_H_EXIT)
      return diverge(r, RRV_DIV_TRACE, "the checkpoint at this event says the process exits "
                     "here, but the event is %s", spec->name);
    int status;
    int prc = rrv_park_before_syscall(r->pid, &status);
    if (prc == -2) {
      r->div.expected_value = ev->result;
      return diverge(r, RRV_DIV_EXITED_EARLY, "the tracee died before its %s (status 0x%x)",
                     spec->name, status);
    }
    if (prc < 0) return rfail(r, "stopping the tracee before its exit");
    return segment_end(r);
  }
  if ((rc = replay_sent_data(r, spec, &regs, ev))) return rc;

  const struct rrv_event *next = next_event(r);
  int signal_at_exit = next && next->kind == RRV_EVENT_SIGNAL &&
                       (next->flags & RRV_EF_AT_SYSCALL_EXIT);
  if (spec->handling == RRV_H_EXEC && ev->result == 0) {
    /* The new image is restored from the checkpoint the recorder took right after it: replay
     * never needs the recording machine's files. */
    advance(r);
    return RRV_STOP_EXEC_RESTORE;
  }
  if (!replay_runs(spec, regs.rdi, ev->result)) return emulate(r, ev, &regs);
  if (spec->handling == RRV_H_EXIT) {
    r->syscalls_executed++;
    r->exit_syscall_event = r->event_index + 1;
    advance(r);
    return 0;
  }
  struct rrv_regs forced = regs;
  if (spec->handling == RRV_H_MMAP) {
    forced.rdi = ev->result;
    forced.r10 |= MAP_FIXED;
    forced.r10 &= ~(uint64_t)MAP_FIXED_NOREPLACE;
    if (ev->aux == RRV_MMAP_ZERO_DEVICE) {    /* /dev/zero: an anonymous mapping */
      forced.r10 |= MAP_ANONYMOUS;
      forced.r8 = -1;
      forced.r9 = 0;
    } else if (ev->aux) {
      /* A recorded file: mapped from a memfd of the recorded content and size that the
       * tracee holds (so past its end it faults, MADV_DONTNEED goes back to it, a shared
       * mapping shares it). The first time, the tracee is parked before this mmap while
       * the driver makes that memfd, then issues the mmap again. */
      int64_t fd = -1;
      if (rrv_py_file_fd(r->handle, ev->aux - 1, ev->result, regs.rsi, regs.r9, &fd)) {
        snprintf(r->message, sizeof r->message, "mapped file #%llu of event %llu is "
                 "unavailable", (unsigned long long)(ev->aux - 1),
                 (unsigned long long)r->event_index);
        return RRV_STOP_ERROR;   /* the callback's TraceError is what the driver raises */
      }
      if (fd < 0) {
        int status;
        int prc = rrv_park_before_syscall(r->pid, &status);
        if (prc == -2) {
          r->div.expected_value = ev->result;
          return diverge(r, RRV_DIV_EXITED_EARLY, "the tracee died before its %s (status "
                         "0x%x)", spec->name, status);
        }
        if (prc < 0) return rfail(r, "stopping the tracee before an mmap");
        r->file_index = ev->aux - 1;
        return RRV_STOP_FILE_FD;
      }
      forced.r10 &= ~(uint64_t)MAP_ANONYMOUS;
      forced.r8 = fd;
    }
  } else if (spec->handling == RRV_H_MREMAP && (uint64_t)ev->result != regs.rdi) {
    forced.r10 |= MREMAP_MAYMOVE | MREMAP_FIXED;
    forced.r8 = ev->result;
  }
  if (!regs_match(&forced, &regs) && rrv_setregs(r->pid, &forced) < 0)
    return rfail(r, "PTRACE_SETREGS");
  int status;
  if (rrv_step_to_syscall_exit(r->pid, &status) < 0) return rfail(r, "executing a syscall");
  if (!WIFSTOPPED(status)) {
    r->div.expected_value = ev->result;
    return diverge(r, RRV_DIV_EXITED_EARLY, "the tracee died inside %s (status 0x%x)",
                   spec->name, status);
  }
  struct rrv_regs after;
  if (rrv_getregs(r->pid, &after) < 0) return rfail(r, "PTRACE_GETREGS");
  if ((int64_t)after.rax != ev->result) {
    r->div.expected_value = ev->result;
    r->div.found_value = after.rax;
    return diverge(r, RRV_DIV_RESULT, "executed %s returned a different result", spec->name);
  }
  r->syscalls_executed++;
  if (spec->handling == RRV_H_MMAP || spec->handling == RRV_H_MREMAP) {
    /* Give the program back the argument registers it passed. */
    after.rdi = regs.rdi;
    after.r10 = regs.r10;
    after.r8 = regs.r8;
    after.r9 = regs.r9;
    if (rrv_setregs(r->pid, &after) < 0) return rfail(r, "PTRACE_SETREGS");
  }
  if ((rc = apply_writes(r, ev))) return rc;
  advance(r);
  if (segment_ends_here(r)) return segment_end(r);
  if (signal_at_exit) r->resume_sig = next->nr; /* injected from the exit stop */
  return 0;
}

static int replay_rdtsc(struct rrv_replayer *r, const struct rrv_regs *regs, int rdtscp) {
  const struct rrv_event *ev = cur_event(r);
  int rc = expect_kind(r, ev, RRV_EVENT_RDTSC, 0);
  if (rc) return rc;
  if ((rc = check_state(r, ev, regs))) return rc;
  if (!!(ev->flags & RRV_EF_RDTSCP) != rdtscp) {
    r->div.expected_kind = r->div.found_kind = RRV_EVENT_RDTSC;
    return diverge(r, RRV_DIV_EVENT_KIND, "recorded %s, replay executed %s",
                   rdtscp ? "rdtsc" : "rdtscp", rdtscp ? "rdtscp" : "rdtsc");
  }
  if (rrv_complete_rdtsc(r->pid, regs, ev->result, ev->aux, rdtscp) < 0)
    return rfail(r, "PTRACE_SETREGS");
  r->rdtscs++;
  if (ev->flags & RRV_EF_SEGV_RESTORE) {   /* as the recorder did: recorder.c, on_signal */
    if (ev->extra_len != sizeof r->segv_restore)
      return diverge(r, RRV_DIV_TRACE, "bad rdtsc event");
    memcpy(&r->segv_restore, (const uint8_t *)ev + ev->size - RRV_ALIGN8(ev->extra_len),
           sizeof r->segv_restore);
    advance(r);
    return RRV_STOP_SEGV_RESTORE;
  }
  advance(r);
  return 0;
}

static int replay_signal(struct rrv_replayer *r, int sig) {
  siginfo_t si;
  struct rrv_regs regs;
  if (ptrace(PTRACE_GETSIGINFO, r->pid, 0, &si) < 0) return rfail(r, "PTRACE_GETSIGINFO");
  if (rrv_getregs(r->pid, &regs) < 0) return rfail(r, "PTRACE_GETREGS");
  if (RRV_FOREIGN_SYSCALL(sig, &si)) {   /* trapped by the filter, never run */
    r->div.expected_nr = cur_event(r)->nr;
    r->div.found_nr = si.si_syscall;
    r->div.expected_regs = cur_event(r)->regs;
    r->div.found_regs = regs;
    return diverge(r, RRV_DIV_SYSCALL, "the replayed program made syscall %d of another ABI "
                   "(audit arch 0x%x, at %p), which replay never runs", si.si_syscall,
                   si.si_arch, si.si_call_addr);
  }
  if (cur_event(r)->kind == RRV_EVENT_FLUSH) {   /* the flush ended at this stop */
    int rc = end_flush(r, -1, 0);
    if (rc) return rc;
    if (!have_events(r, 1)) return RRV_STOP_END_OF_TRACE;
  }
  int rdtscp;   /* a trapped rdtsc, unless the recording delivered it (PR_TSC_SIGSEGV) */
  if (sig == SIGSEGV && si.si_code == SI_KERNEL && cur_event(r)->kind != RRV_EVENT_SIGNAL &&
      rrv_is_rdtsc(r->pid, regs.rip, &rdtscp))
    return replay_rdtsc(r, &regs, rdtscp);
  const struct rrv_event *ev = cur_event(r);
  int rc = expect_kind(r, ev, RRV_EVENT_SIGNAL, sig);
  if (rc) return rc;
  if (ev->nr != sig) {
    r->div.expected_nr = ev->nr;
    r->div.found_nr = sig;
    return diverge(r, RRV_DIV_SIGNAL, "a different signal arrived");
  }
  if ((rc = check_state(r, ev, &regs))) return rc;
  const uint8_t *extra = (const uint8_t *)ev + ev->size - RRV_ALIGN8(ev->extra_len);
  if (ev->extra_len != sizeof(siginfo_t)) return diverge(r, RRV_DIV_TRACE, "bad signal event");
  siginfo_t recorded;
  memcpy(&recorded, extra, sizeof recorded);
  if (!(ev->flags & (RRV_EF_AT_SYSCALL_EXIT | RRV_EF_AT_SYSCALL_ENTRY)) &&
      (si.si_code != recorded.si_code || si.si_addr != recorded.si_addr)) {
    r->div.expected_value = (int64_t)(uintptr_t)recorded.si_addr;
    r->div.found_value = (int64_t)(uintptr_t)si.si_addr;
    return diverge(r, RRV_DIV_SIGINFO, "signal %d: si_code %d at %p, recorded si_code %d at %p",
                   sig, si.si_code, si.si_addr, recorded.si_code, recorded.si_addr);
  }
  if (ptrace(PTRACE_SETSIGINFO, r->pid, 0, &recorded) < 0) return rfail(r, "PTRACE_SETSIGINFO");
  /* Delivered by single-step, as recorded: the next stop shows the frame (finish_replayed_delivery). */
  free(r->delivered_event);
  r->delivered_event = malloc(ev->size);
  if (!r->delivered_event) return rfail(r, "out of memory");
  memcpy(r->delivered_event, ev, ev->size);
  r->delivering = 1;
  r->resume_op = PTRACE_SINGLESTEP;
  r->resume_sig = sig;
  r->signals++;
  /* A signal recorded right after this one at the same syscall exit (SIGCONT after a SIGSTOP,
   * a second one whose default is to do nothing): queued now, so that the kernel delivers it
   * next, where the recording saw it. */
  const struct rrv_event *next = next_event(r);
  if (next && next->kind == RRV_EVENT_SIGNAL && (next->flags & RRV_EF_AT_SYSCALL_EXIT)) {
    if (!RRV_SIGNAL_NUMBER(next->nr)) {
      advance(r);
      return diverge(r, RRV_DIV_TRACE, "signal %d is no signal", next->nr);
    }
    if (syscall(SYS_tgkill, r->pid, r->pid, next->nr) < 0)
      return rfail(r, "queueing the next recorded signal");
  }
  advance(r);
  return 0;
}

/* The signal mask a syscall installs while it waits (rt_sigsuspend, ppoll, pselect6,
 * epoll_pwait, epoll_pwait2), from its arguments: 1 with *mask, or 0. */
static int waiting_mask(int pid, int64_t nr, const struct rrv_regs *a, uint64_t *mask) {
  uint64_t ptr = 0, ss[2];
  switch (nr) {
    case SYS_rt_sigsuspend: ptr = a->rdi; break;
    case SYS_ppoll: ptr = a->r10; break;
    case SYS_epoll_pwait: case 441 /* epoll_pwait2 */: ptr = a->r8; break;
    case SYS_pselect6:   /* a pointer to {const sigset_t *ss; size_t ss_len} */
      if (!a->r9 || rrv_read_mem(pid, a->r9, ss, sizeof ss) != sizeof ss) return 0;
      ptr = ss[0];
      break;
    default: return 0;
  }
  return ptr && rrv_read_mem(pid, ptr, mask, 8) == 8;
}

/* The first stop after a signal delivered by single-step: the kernel wrote a signal frame if
 * the signal has a handler, and the recording then captured it as the SIGNAL event's writes.
 * Both must agree; the frame is written back as recorded (its FPU area depends on what the CPU
 * happened to consider in use, tracee.c: rrv_signal_frame). Returns 1 if the stop was only
 * the single-step trap, 0 to handle it as usual, or an RRV_STOP_*. */
static int finish_replayed_delivery(struct rrv_replayer *r, int status) {
  const struct rrv_event *ev = r->delivered_event;
  r->delivering = 0;
  struct rrv_regs regs;
  uint64_t frame[2][2];
  int framed = WIFSTOPPED(status) && rrv_getregs(r->pid, &regs) == 0 &&
               rrv_signal_frame(r->pid, &regs, ev->nr, frame) > 0;
  if (framed != (ev->nwrites > 0)) {
    r->div.expected_value = ev->nwrites > 0;
    r->div.found_value = framed;
    return diverge(r, RRV_DIV_SIGNAL, "signal %d was delivered %s a handler in the recording, "
                   "%s in replay", ev->nr, ev->nwrites ? "to" : "without", framed ? "to one" : "without");
  }
  if (r->wait_mask_set) {
    r->wait_mask_set = 0;
    if (!framed && rrv_set_sigmask(r->pid, r->mask_before_wait) < 0)
      return rfail(r, "restoring the signal mask after a waiting syscall");
  }
  int rc = framed ? apply_writes(r, ev) : 0;
  if (rc) return rc;
  siginfo_t si;
  return WIFSTOPPED(status) && ptrace(PTRACE_GETSIGINFO, r->pid, 0, &si) == 0 &&
         RRV_DELIVERY_STEP(status, &si);
}

/* Continue with another process: a fresh restore, standing at a syscall-exit stop. */
void rrv_replay_set_pid(struct rrv_replayer *r, int pid) {
  r->pid = pid;
  r->resume_op = PTRACE_CONT;
  r->resume_sig = 0;
  r->delivering = 0;
  rrv_forget_mem();
}

static int end_at_inexact_death(struct rrv_replayer *r) {
  const struct rrv_event *ev = cur_event(r);
  if (ev->kind == RRV_EVENT_SIGNAL) {   /* ASYNC_FATAL: the exit it caused follows */
    const struct rrv_event *exit = have_events(r, 2) ? next_event(r) : NULL;
    if (!exit) return r->eof ? RRV_STOP_END_OF_TRACE : RRV_STOP_NEED_EVENTS;
    if (exit->kind != RRV_EVENT_EXIT || !WIFSIGNALED(exit->nr) || WTERMSIG(exit->nr) != ev->nr)
      return diverge(r, RRV_DIV_TRACE, "a fatal signal delivered in user code must be followed "
                     "by the death it caused");
    int sig = ev->nr;
    /* Only a signal whose default action ends the process can (SIGKILL has no delivery stop:
     * its death is an EXIT alone). */
    if (!RRV_SIGNAL_NUMBER(sig) || sig == SIGKILL || sig == SIGSTOP || sig == SIGTSTP ||
        sig == SIGTTIN || sig == SIGTTOU || sig == SIGCHLD || sig == SIGURG ||
        sig == SIGWINCH || sig == SIGCONT)
      return diverge(r, RRV_DIV_TRACE, "signal %d cannot be a fatal signal delivered in user "
                     "code", sig);
    /* ...and only one the process neither handles, ignores nor blocks: here, as recorded. */
    uint64_t caught = 0, ignored = 0, blocked = 0, bit = 1ull << (sig - 1);
    if (rrv_signal_sets(r->pid, &caught, &ignored, &blocked) < 0)
      return rfail(r, "reading the tracee's signal dispositions");
    if ((caught | ignored | blocked) & bit) {
      r->div.expected_nr = sig;
      return diverge(r, RRV_DIV_SIGNAL, "the recording says signal %d killed the process in "
                     "user code, but here the process %s it", sig,
                     caught & bit ? "handles" : ignored & bit ? "ignores" : "blocks");
    }
    advance(r);
    ev = cur_event(r);
  }
  if (have_events(r, 2))
    return diverge(r, RRV_DIV_TRACE, "the trace goes on after the tracee's exit");
  r->status = ev->nr;
  r->inexact_deaths++;
  advance(r);
  rrv_kill(r->pid);
  return RRV_STOP_EXITED;
}

int rrv_replay_run(struct rrv_replayer *r) {
  for (;;) {
    /* A stop may take up to four events: a flush's end, an unwind, a syscall, a signal at
     * its exit. */
    if (!have_events(r, 4) && !r->eof) return RRV_STOP_NEED_EVENTS;
    if (!have_events(r, 1)) return RRV_STOP_END_OF_TRACE;
    /* A death at a point replay cannot find (SIGKILL; a fatal signal that came in user code,
     * delivered at once): every event before it was checked; the process ends here. */
    const struct rrv_event *cur = cur_event(r);
    int rc;
    /* armed as the tracee goes on into user code (not on its way to a syscall's exit) */
    if (cur->kind == RRV_EVENT_FLUSH && !r->flushing && r->resume_op == PTRACE_CONT &&
        (rc = begin_flush(r)))
      return rc;
    if (cur->kind == RRV_EVENT_FLUSH && r->flushing && !r->flush_left && have_events(r, 2)) {
      /* every record hit, and the process then died where replay cannot follow */
      const struct rrv_event *next = next_event(r);
      if ((next->kind == RRV_EVENT_EXIT && WIFSIGNALED(next->nr) && WTERMSIG(next->nr) == SIGKILL) ||
          (next->kind == RRV_EVENT_SIGNAL && (next->flags & RRV_EF_ASYNC_FATAL))) {
        if ((rc = end_flush(r, -1, 1))) return rc;
        cur = cur_event(r);
      }
    }
    int sigkilled = cur->kind == RRV_EVENT_EXIT && WIFSIGNALED(cur->nr) &&
                    WTERMSIG(cur->nr) == SIGKILL;
    /* (unless a checkpoint comes first: the segment ends there, at the exit stop it heads for) */
    if ((sigkilled || (cur->kind == RRV_EVENT_SIGNAL && (cur->flags & RRV_EF_ASYNC_FATAL))) &&
        !segment_ends_here(r))
      return end_at_inexact_death(r);
    int sig = r->resume_sig;
    r->resume_sig = 0;
    if (ptrace(r->resume_op, r->pid, 0, sig) < 0) return rfail(r, "resuming the tracee");
    r->resume_op = PTRACE_CONT;
    int status;
    struct rrv_regs hit_regs;
    if (rrv_wait(r->pid, &status) < 0) return rfail(r, "waitpid");
    if (r->delivering && (rc = finish_replayed_delivery(r, status))) {
      if (rc == 1) continue;     /* the single-step trap: resume */
      return rc;
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      r->status = status;
      const struct rrv_event *ev = cur_event(r);
      if ((rc = expect_kind(r, ev, RRV_EVENT_EXIT, status))) return rc;
      /* The core-dump bit depends on RLIMIT_CORE, which replay sets to 0. */
      if ((status & ~0x80) != (ev->nr & ~0x80)) {
        r->div.expected_value = ev->nr;
        r->div.found_value = status;
        return diverge(r, RRV_DIV_EXIT_STATUS, "exit status differs");
      }
      advance(r);
      return RRV_STOP_EXITED;
    }
    if (RRV_GROUP_STOP(status)) {
      rc = 0;   /* a stop signal's stop, or its end: nobody sends SIGCONT in replay: go on */
    } else if (RRV_SECCOMP_STOP(status)) {
      rc = replay_syscall(r);
    } else if (r->armed && WSTOPSIG(status) == SIGTRAP && !(status >> 16) &&
               syscall_breakpoint_hit(r, &hit_regs)) {
      rc = replay_buffered_hit(r, hit_regs);
    } else if (RRV_SYSCALL_EXIT_STOP(status)) {
      /* Reached only after an emulated syscall, to end a segment or inject a signal. */
      struct rrv_regs regs;
      if (rrv_getregs(r->pid, &regs) < 0) return rfail(r, "PTRACE_GETREGS");
      if ((int64_t)regs.orig_rax == -1) { /* emulated: give the task back its syscall number */
        regs.orig_rax = r->last_nr;
        if (rrv_setregs(r->pid, &regs) < 0) return rfail(r, "PTRACE_SETREGS");
      }
      if (segment_ends_here(r)) return segment_end(r);
      const struct rrv_event *ev = cur_event(r);
      if ((rc = expect_kind(r, ev, RRV_EVENT_SIGNAL, 0))) return rc;
      r->resume_sig = ev->nr;
      /* The recording delivered it under the mask the emulated syscall would have installed
       * while it waited: so does replay (the recorded frame, written back, holds the mask
       * to return to; without a handler, the mask before is put back at once). */
      uint64_t wait_mask;
      if (waiting_mask(r->pid, r->last_nr, &regs, &wait_mask)) {
        if (rrv_get_sigmask(r->pid, &r->mask_before_wait) < 0 ||
            rrv_set_sigmask(r->pid, wait_mask) < 0)
          return rfail(r, "setting the signal mask of a waiting syscall");
        r->wait_mask_set = 1;
      }
    } else if (WSTOPSIG(status) == SIGTRAP && (status >> 16)) {
      snprintf(r->message, sizeof r->message, "unexpected ptrace event %d", status >> 16);
      rc = RRV_STOP_ERROR;
    } else {
      rc = replay_signal(r, WSTOPSIG(status));
    }
    if (rc) return rc;
  }
}
