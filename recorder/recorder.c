/* recorder.c: the native record loop. One seccomp stop at each syscall's entry, one
 * PTRACE_SYSCALL stop at its exit; the syscall table (generated from recorder/syscalls.py)
 * says which memory the syscall wrote. Returns to Python only to flush events, at an execve,
 * at exit, and for what the recording cannot handle. */

static int ensure_room(struct rrv_recorder *r, size_t more) {
  if (r->len + more <= r->cap) return 0;
  size_t cap = r->cap ? r->cap : (1 << 20);
  while (cap < r->len + more) cap *= 2;
  uint8_t *buf = realloc(r->buf, cap);
  if (!buf) return -1;
  r->buf = buf;
  r->cap = cap;
  return 0;
}

/* An event under construction lives at r->buf + start until event_end() seals it. */
static size_t event_begin(struct rrv_recorder *r, int kind, int nr, const struct rrv_regs *regs) {
  if (ensure_room(r, sizeof(struct rrv_event))) return (size_t)-1;
  size_t start = r->len;
  struct rrv_event *ev = (struct rrv_event *)(r->buf + start);
  r->open_event = start;
  memset(ev, 0, sizeof *ev);
  ev->kind = kind;
  ev->nr = nr;
  ev->tid = r->pid;
  if (regs) ev->regs = *regs;
  r->len += sizeof *ev;
  return start;
}

static struct rrv_event *event_at(struct rrv_recorder *r, size_t start) {
  return (struct rrv_event *)(r->buf + start);
}

static int event_add_extra(struct rrv_recorder *r, size_t start, const void *data, size_t len) {
  if (ensure_room(r, RRV_ALIGN8(len))) return -1;
  memset(r->buf + r->len, 0, RRV_ALIGN8(len));
  memcpy(r->buf + r->len, data, len);
  r->len += RRV_ALIGN8(len);
  event_at(r, start)->extra_len = len;
  return 0;
}

static void event_end(struct rrv_recorder *r, size_t start) {
  r->open_event = (size_t)-1;
  event_at(r, start)->size = r->len - start;
  r->events++;
  r->buffered_events++;
}

/* Record that [addr, addr+len) of the tracee holds what it holds now. */
static int capture(struct rrv_recorder *r, size_t start, uint64_t addr, uint64_t len) {
  if (!addr || !len) return 0;
  if (len > RRV_MAX_WRITE) len = RRV_MAX_WRITE;
  if (len > r->blob_threshold || r->len - start + len > RRV_EVENT_INLINE_MAX) {
    uint8_t *tmp = malloc(len);
    if (!tmp) return -1;
    ssize_t n = rrv_read_mem(r->pid, addr, tmp, len);
    if (n <= 0) {
      free(tmp);
      return 0;
    }
    if (ensure_room(r, sizeof(struct rrv_write) + RRV_DIGEST_BYTES)) {
      free(tmp);
      return -1;
    }
    struct rrv_write *w = (struct rrv_write *)(r->buf + r->len);
    w->addr = addr;
    w->len = n;
    w->how = RRV_WRITE_BLOB;
    int rc = rrv_py_blob_put(r->handle, tmp, n, r->buf + r->len + sizeof *w);
    free(tmp);
    if (rc) return -1;
    r->len += sizeof *w + RRV_DIGEST_BYTES;
  } else {
    if (ensure_room(r, sizeof(struct rrv_write) + RRV_ALIGN8(len))) return -1;
    struct rrv_write *w = (struct rrv_write *)(r->buf + r->len);
    uint8_t *data = r->buf + r->len + sizeof *w;
    ssize_t n = rrv_read_mem(r->pid, addr, data, len);
    if (n <= 0) return 0; /* unreadable: the kernel wrote nothing there either */
    memset(data + n, 0, RRV_ALIGN8(n) - n);
    w->addr = addr;
    w->len = n;
    w->how = RRV_WRITE_INLINE;
    r->len += sizeof *w + RRV_ALIGN8(n);
  }
  event_at(r, start)->nwrites++;
  return 0;
}

/* Append a write of `len` bytes the recorder has in hand (not read from the tracee). */
static int event_add_write(struct rrv_recorder *r, size_t start, uint64_t addr, const void *data,
                           uint32_t len) {
  if (ensure_room(r, sizeof(struct rrv_write) + RRV_ALIGN8(len))) return -1;
  struct rrv_write *w = (struct rrv_write *)(r->buf + r->len);
  w->addr = addr;
  w->len = len;
  w->how = RRV_WRITE_INLINE;
  memset(r->buf + r->len + sizeof *w, 0, RRV_ALIGN8(len));
  memcpy(r->buf + r->len + sizeof *w, data, len);
  r->len += sizeof *w + RRV_ALIGN8(len);
  event_at(r, start)->nwrites++;
  return 0;
}

static int fail(struct rrv_recorder *r, const char *what);

/* Is a periodic checkpoint due once `coming` more events (buffered syscalls count) are in? */
static int checkpoint_due(const struct rrv_recorder *r, uint64_t coming) {
  return r->events + r->buffered_syscalls + coming >= r->next_checkpoint_event ||
         (r->checkpoint_interval_ns &&
          rrv_now_ns() - r->last_checkpoint_ns >= r->checkpoint_interval_ns);
}

/* A syscall, traced or buffered, that set a signal's action since the exec (a checkpoint
 * reads those actions) */
static void note_action_set(struct rrv_recorder *r, int64_t nr, uint64_t sig, uint64_t act,
                            int64_t result) {
  int signum = (int)sig;        /* the kernel reads an int */
  if (nr == SYS_rt_sigaction && result == 0 && act && signum >= 1 && signum <= 64)
    r->actions_set |= 1ull << (signum - 1);
}

/* The syscalls a process buffered since its last flush become one FLUSH event, before the
 * event of the stop it is at (only stops that record an event flush: replay flushes at the
 * same ones). Each record is copied as the preload wrote it, except that the bytes a write
 * sent become their digest (and the hash of a pipe's bytes, as for a traced write), and the
 * buffer is emptied, by a write the event carries so that replay empties it too. */
static int syscallbuf_flush(struct rrv_recorder *r) {
  static __thread uint8_t in[RRV_SYSCALLBUF_SIZE];     /* per tracer thread */
  static __thread uint32_t at[RRV_SYSCALLBUF_SIZE / sizeof(struct rrv_buffered_syscall) + 1];
  const size_t hdr = sizeof(struct rrv_syscallbuf_hdr);
  uint32_t n = 0;
  if (!r->syscallbuf) return 0;
  if (rrv_read_mem(r->pid, r->syscallbuf, &n, sizeof n) != sizeof n)
    return fail(r, "reading the syscall buffer");
  if (!n) return 0;
  char why[160];
  if (n > RRV_SYSCALLBUF_SIZE - hdr || rrv_read_mem(r->pid, r->syscallbuf + hdr, in, n) != n) {
    snprintf(r->message, sizeof r->message, "its syscall buffer at 0x%llx says it holds %u "
             "bytes of records, more than it can", (unsigned long long)r->syscallbuf, n);
    return RRV_STOP_ERROR;
  }
  uint32_t count = 0;
  for (size_t pos = 0; pos < n; count++) {
    size_t size = buffered_record_size(in + pos, n - pos, 1, why, sizeof why);
    if (!size) {
      snprintf(r->message, sizeof r->message, "buffered syscall %u of its syscall buffer is "
               "malformed: %s", count, why);
      return RRV_STOP_ERROR;
    }
    at[count] = pos;
    pos += size;
  }
  size_t ev = event_begin(r, RRV_EVENT_FLUSH, count, NULL);
  if (ev == (size_t)-1) return fail(r, "out of memory");
  event_at(r, ev)->result = n;
  event_at(r, ev)->aux = r->syscallbuf;
  static const uint8_t zero[RRV_SYSCALLBUF_SIZE];
  /* The header's num_rec_bytes, num_records and io_fds; before a checkpoint the records too,
   * or every checkpoint would store a buffer's worth of stale records as new pages. */
  /* +2: this FLUSH and the event of the stop it comes before, counted when the checkpoint
   * is decided */
  int checkpoint_next = checkpoint_due(r, count + 2);
  if (event_add_write(r, ev, r->syscallbuf, zero, 16) ||
      (checkpoint_next && event_add_write(r, ev, r->syscallbuf + hdr, zero, n)))
    return fail(r, "out of memory");
  if (ensure_room(r, n + (size_t)count * sizeof(struct rrv_pipe_io))) return fail(r, "out of memory");
  size_t extra = r->len;
  uint64_t fd_pipe[256];
  memset(fd_pipe, 0xff, sizeof fd_pipe);
  for (uint32_t i = 0; i < count; i++) {
    const uint8_t *p = in + at[i];
    const struct rrv_buffered_syscall *rec = (const struct rrv_buffered_syscall *)p;
    struct rrv_buffered_syscall *out = (struct rrv_buffered_syscall *)(r->buf + r->len);
    *out = *rec;
    out->nwrites = 0;
    out->flags = 0;
    out->sent_digest = 0;
    size_t o = sizeof *out, q = sizeof *rec;
    int moves = rec->nr == SYS_read || rec->nr == SYS_readv || rec->nr == SYS_write ||
                rec->nr == SYS_writev;
    /* The fd is still what it was: closing an fd a record moved data through is not buffered
     * (the preload's io_fds). Within one flush only a buffered openat or close can change what
     * an fd number names, so the answer is cached until one does. */
    if (rec->nr == SYS_openat || rec->nr == SYS_close) memset(fd_pipe, 0xff, sizeof fd_pipe);
    uint64_t pipe = 0;
    if (moves && rec->result > 0) {
      int fd = (int)rec->args[0];
      if (fd >= 0 && fd < (int)(sizeof fd_pipe / sizeof *fd_pipe)) {
        if (fd_pipe[fd] == UINT64_MAX) fd_pipe[fd] = pipe_of(r->pid, fd);
        pipe = fd_pipe[fd];
      } else {
        pipe = pipe_of(r->pid, fd);
      }
    }
    uint64_t poly = 0;
    for (unsigned k = 0; k < rec->nwrites; k++) {
      const struct rrv_write *w = (const struct rrv_write *)(p + q);
      const uint8_t *data = p + q + sizeof *w;
      if (w->how == RRV_WRITE_SENT) {
        out->sent_digest = sent_digest_update(out->sent_digest, data, w->len);
        out->flags |= RRV_BF_SENT;
      } else {
        memcpy(r->buf + r->len + o, w, sizeof *w + RRV_ALIGN8((size_t)w->len));
        o += sizeof *w + RRV_ALIGN8((size_t)w->len);
        out->nwrites++;
      }
      if (pipe) poly = rrv_poly_hash(poly, data, w->len);
      q += sizeof *w + RRV_ALIGN8((size_t)w->len);
    }
    if (pipe) {
      struct rrv_pipe_io io = {pipe, poly, rec->nr == SYS_read || rec->nr == SYS_readv ?
                                               RRV_PIPE_READ : RRV_PIPE_WRITE, 0};
      memcpy(r->buf + r->len + o, &io, sizeof io);
      o += sizeof io;
      out->flags |= RRV_BF_PIPE;
    }
    if (rec->nr == SYS_close && rec->result == 0 && rec->args[0] < sizeof r->self_mem_fds)
      r->self_mem_fds[rec->args[0]] = 0;
    note_action_set(r, rec->nr, rec->args[0], rec->args[1], rec->result);
    out->size = o;
    r->len += o;
  }
  event_at(r, ev)->extra_len = r->len - extra;
  event_end(r, ev);
  if (rrv_write_mem(r->pid, r->syscallbuf, zero, 16) != 16 ||
      (checkpoint_next && rrv_write_mem(r->pid, r->syscallbuf + hdr, zero, n) != n))
    return fail(r, "emptying the syscall buffer");
  r->buffered_syscalls += count;
  r->flushes++;
  return 0;
}

/* Was fd opened for writing (its access mode, from /proc/PID/fdinfo)? */
static int fd_writable(int pid, int fd) {
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/%d/fdinfo/%d", pid, fd);
  int f = open(path, O_RDONLY | O_CLOEXEC);
  if (f < 0) return 1;
  ssize_t n = read(f, buf, sizeof buf - 1);
  close(f);
  if (n <= 0) return 1;
  buf[n] = 0;
  const char *flags = strstr(buf, "flags:");
  unsigned long mode = 0;
  if (!flags || sscanf(flags + 6, "%lo", &mode) != 1) return 1;
  return (mode & O_ACCMODE) != O_RDONLY;
}

static int syscallbuf_set_flags(struct rrv_recorder *r, uint32_t set, uint32_t clear,
                                uint32_t *before);

/* Set flags of the process's buffer header, as a write of the event at ev (so that replay
 * sets them at the same point). */
static int syscallbuf_set_flags_at(struct rrv_recorder *r, size_t ev, uint32_t set) {
  if (syscallbuf_set_flags(r, set, 0, NULL) < 0) return fail(r, "writing the syscall buffer");
  if (capture(r, ev, r->syscallbuf + offsetof(struct rrv_syscallbuf_hdr, flags), 4))
    return fail(r, "out of memory");
  return 0;
}

/* Set (or clear) flags of the process's buffer header; recorded by whoever calls. */
static int syscallbuf_set_flags(struct rrv_recorder *r, uint32_t set, uint32_t clear,
                                uint32_t *before) {
  uint32_t flags;
  uint64_t at = r->syscallbuf + offsetof(struct rrv_syscallbuf_hdr, flags);
  if (rrv_read_mem(r->pid, at, &flags, 4) != 4) return -1;
  if (before) *before = flags;
  flags = (flags | set) & ~clear;
  return rrv_write_mem(r->pid, at, &flags, 4) == 4 ? 0 : -1;
}

/* At a vfork's exit: the child that used the buffer flushed its records at its last stop,
 * unless it died in between (SIGKILL), maybe inside the hook. What it left is not the
 * parent's: the buffer is emptied, a change of memory recorded with the child's others. */
static int syscallbuf_reset_after_child(struct rrv_recorder *r) {
  struct rrv_syscallbuf_hdr h;
  size_t n = offsetof(struct rrv_syscallbuf_hdr, flags);   /* counts, io_fds, in_hook */
  if (rrv_read_mem(r->pid, r->syscallbuf, &h, n) != (ssize_t)n) return -1;
  if (!h.num_rec_bytes && !h.num_records && !h.io_fds && !h.in_hook) return 0;
  memset(&h, 0, n);
  return rrv_write_mem(r->pid, r->syscallbuf, &h, n) == (ssize_t)n ? 0 : -1;
}

static uint32_t tracee_u32(int pid, uint64_t addr) {
  uint32_t v = 0;
  if (addr) rrv_read_mem(pid, addr, &v, 4);
  return v;
}

/* The size of an output per the table's vocabulary (see recorder/syscalls.py). */
static uint64_t out_size(int pid, const struct rrv_out_spec *o, const struct rrv_regs *args,
                         int64_t result) {
  switch (o->size_kind) {
    case RRV_SZ_FIXED: return o->n;
    case RRV_SZ_RESULT: return result > 0 ? (uint64_t)result : 0;
    case RRV_SZ_ARG: return arg_of(args, o->size_arg);
    case RRV_SZ_RESULT_TIMES: return result > 0 ? (uint64_t)result * o->n : 0;
    case RRV_SZ_ARG_TIMES: return arg_of(args, o->size_arg) * o->n;
    case RRV_SZ_DEREF_U32: return tracee_u32(pid, arg_of(args, o->size_arg));
    case RRV_SZ_FDSET: return ((arg_of(args, o->size_arg) + 63) / 64) * 8;
    case RRV_SZ_PAGES: return (arg_of(args, o->size_arg) + 4095) / 4096;
  }
  return 0;
}

/* An ioctl command whose number does not say what it writes (_IOC_NONE, size 0) has an entry
 * in the table (recorder/syscalls.py: LEGACY_IOCTLS); NULL for an _IOC-encoded one. *unknown:
 * neither. */
static const struct rrv_legacy_ioctl *legacy_ioctl_or_unknown(uint64_t cmd, int *unknown) {
  *unknown = 0;
  if ((cmd >> 16) & 0xffff) return NULL;      /* a direction or a size: _IOC-encoded */
  for (int i = 0; i < RRV_NLEGACY_IOCTLS; i++)
    if (rrv_legacy_ioctls[i].cmd == cmd) return &rrv_legacy_ioctls[i];
  *unknown = 1;
  return NULL;
}

static const struct rrv_legacy_ioctl *legacy_ioctl(uint64_t cmd) {
  int unknown;
  return legacy_ioctl_or_unknown(cmd, &unknown);
}

static int capture_iovecs(struct rrv_recorder *r, size_t start, uint64_t iov, uint64_t cnt,
                          uint64_t total) {
  uint64_t addrs[1024], lens[1024];
  int n = rrv_read_iovecs(r->pid, iov, cnt, total, addrs, lens, 1024);
  for (int i = 0; i < n; i++)
    if (capture(r, start, addrs[i], lens[i])) return -1;
  return 0;
}

static int capture_irregular(struct rrv_recorder *r, size_t start, int irregular,
                             const struct rrv_regs *a, int64_t result);

/* What recvmsg (or one message of recvmmsg) wrote: the msghdr at `at` (its lengths and
 * flags), the address, the control data, and `len` bytes of the iovecs. */
static int capture_received(struct rrv_recorder *r, size_t start, uint64_t at, uint64_t len) {
  struct kernel_msghdr msg;
  if (rrv_read_mem(r->pid, at, &msg, sizeof msg) != sizeof msg) return 0;
  if (capture(r, start, at, sizeof msg)) return -1;
  if (capture(r, start, msg.name, msg.namelen)) return -1;
  if (capture(r, start, msg.control, msg.controllen)) return -1;
  return capture_iovecs(r, start, msg.iov, msg.iovlen, len);
}

/* Every output a successful syscall wrote: the table's, then its irregular handler's. */
static int capture_outputs(struct rrv_recorder *r, size_t ev,
                           const struct rrv_syscall_spec *spec, const struct rrv_regs *args,
                           int64_t result) {
  for (int i = 0; i < spec->noutputs; i++) {
    const struct rrv_out_spec *o = &spec->out[i];
    if (capture(r, ev, arg_of(args, o->arg), out_size(r->pid, o, args, result))) return -1;
  }
  return spec->irregular ? capture_irregular(r, ev, spec->irregular, args, result) : 0;
}

static int capture_irregular(struct rrv_recorder *r, size_t start, int irregular,
                             const struct rrv_regs *a, int64_t result) {
  uint64_t dir, size, cmd;
  switch (irregular) {
    case RRV_IRR_IOCTL: {
      cmd = a->rsi & 0xffffffff;
      const struct rrv_legacy_ioctl *legacy = legacy_ioctl(cmd);
      if (legacy) return capture(r, start, a->rdx, legacy->size);
      dir = (cmd >> 30) & 3;
      size = (cmd >> 16) & 0x3fff;
      if (dir & 2) return capture(r, start, a->rdx, size);  /* _IOC_READ: kernel writes */
      return 0;
    }
    case RRV_IRR_FCNTL:
      cmd = a->rsi;
      if (cmd == 5 /* F_GETLK */ || cmd == 36 /* F_OFD_GETLK */)
        return capture(r, start, a->rdx, 32);
      if (cmd == 16 /* F_GETOWN_EX */) return capture(r, start, a->rdx, 8);
      if (cmd == 1035 /* F_GET_RW_HINT */ || cmd == 1037 /* F_GET_FILE_RW_HINT */)
        return capture(r, start, a->rdx, 8);
      return 0;
    case RRV_IRR_IOV_RESULT:
      return capture_iovecs(r, start, a->rsi, a->rdx, result);
    case RRV_IRR_RESTART:   /* the interrupted syscall's outputs, with its arguments */
      if (r->restart_nr <= 0 || r->restart_nr >= RRV_NSYSCALLS ||
          !rrv_syscalls[r->restart_nr].handling || r->restart_nr == SYS_restart_syscall)
        return 0;
      return capture_outputs(r, start, &rrv_syscalls[r->restart_nr], &r->restart_args, result);
    case RRV_IRR_UNSHARE:
      return 0;
    case RRV_IRR_PROCESS_VM:   /* on itself: readv wrote its local iovecs, writev the remote */
      return a->orig_rax == SYS_process_vm_readv
                 ? capture_iovecs(r, start, a->rsi, a->rdx, result)
                 : capture_iovecs(r, start, a->r10, a->r8, result);
    case RRV_IRR_RECVMSG:
      return capture_received(r, start, a->rsi, result);
    case RRV_IRR_RECVMMSG:   /* `result` messages, each a msghdr and its msg_len */
      for (int64_t i = 0; i < result && i < 1024; i++) {
        uint64_t at = a->rsi + i * (sizeof(struct kernel_msghdr) + 8),
                 len_at = at + sizeof(struct kernel_msghdr);   /* mmsghdr.msg_len */
        uint32_t len = 0;
        if (rrv_read_mem(r->pid, len_at, &len, 4) != 4) return 0;
        if (capture(r, start, len_at, 4) || capture_received(r, start, at, len))
          return -1;
      }
      return 0;
    case RRV_IRR_MSGRCV:     /* long mtype, then the text */
      return capture(r, start, a->rsi, result + 8);
    case RRV_IRR_IPC_CTL:    /* semctl/msgctl: what their STAT and INFO commands fill */
      cmd = (a->orig_rax == SYS_semctl ? a->rdx : a->rsi) & ~0x100ull;   /* IPC_64 */
      size = a->orig_rax == SYS_semctl
                 ? (cmd == 2 || cmd == 18 || cmd == 20 ? 104 : cmd == 3 || cmd == 19 ? 40 : 0)
                 : (cmd == 2 || cmd == 11 || cmd == 13 ? 120 : cmd == 3 || cmd == 12 ? 32 : 0);
      if (a->orig_rax == SYS_semctl && cmd == 13 /* GETALL: an unsigned short per semaphore */) {
        struct { uint8_t perm[48]; uint64_t otime, u1, ctime, u2, nsems, u3, u4; } ds;
        if (syscall(SYS_semctl, (int)a->rdi, 0, 2 /* IPC_STAT, the recorder's own */, &ds) == 0)
          size = ds.nsems * 2;
      }
      return capture(r, start, a->orig_rax == SYS_semctl ? a->r10 : a->rdx, size);
    case RRV_IRR_CLONE: {    /* the parent's outputs: a pidfd, its child's tid */
      uint64_t pidfd_at = a->rdx, ptid_at = a->rdx;    /* clone: both at parent_tid */
      if (a->orig_rax == SYS_clone3) {
        struct { uint64_t flags, pidfd, child_tid, parent_tid; } ca;
        if (rrv_read_mem(r->pid, a->rdi, &ca, sizeof ca) != sizeof ca) return 0;
        pidfd_at = ca.pidfd;
        ptid_at = ca.parent_tid;
      }
      if ((r->sc_clone_flags & RRV_CLONE_PIDFD) && capture(r, start, pidfd_at, 4)) return -1;
      if (r->sc_clone_flags & RRV_CLONE_PARENT_SETTID) return capture(r, start, ptid_at, 4);
      return 0;
    }
    case RRV_IRR_PRCTL:
      switch (a->rdi) {
        case PR_GET_NAME: return capture(r, start, a->rsi, 16);
        case 40 /* PR_GET_TID_ADDRESS */: return capture(r, start, a->rsi, 8);
        case PR_GET_PDEATHSIG: case PR_GET_CHILD_SUBREAPER: case PR_GET_ENDIAN:
        case PR_GET_FPEMU: case PR_GET_FPEXC: case PR_GET_UNALIGN:
          return capture(r, start, a->rsi, 4);
        case 0x41555856 /* PR_GET_AUXV: result is the whole size */:
          return capture(r, start, a->rsi, (uint64_t)result < a->rdx ? (uint64_t)result : a->rdx);
      }
      return 0;
  }
  return 0;
}

/* Descriptors of the tracee's own /proc/PID/mem: what it writes through one changes its own
 * memory, which replay (where the write is emulated) must get as an output. Kept from the
 * opens that return one and the dups of one. Returns whether fd-based syscall `nr` (at its
 * exit, result >= 0) is a write through such a descriptor. */
static int is_self_mem(struct rrv_recorder *r, int fd) {
  char link[64], target[64], want[64];
  snprintf(link, sizeof link, "/proc/%d/fd/%d", r->pid, fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n <= 0) return 0;
  target[n] = 0;
  snprintf(want, sizeof want, "/proc/%d/mem", r->pid);
  return strcmp(target, want) == 0;
}

static int track_self_mem(struct rrv_recorder *r, int64_t nr, const struct rrv_regs *a,
                          int64_t result) {
  uint64_t fd = a->rdi;
  int marked = fd < sizeof r->self_mem_fds && r->self_mem_fds[fd];
  if (result < 0) return 0;
  switch (nr) {
    case SYS_open: case SYS_openat: case SYS_openat2:
      if (result < (int64_t)sizeof r->self_mem_fds) r->self_mem_fds[result] = is_self_mem(r, result);
      return 0;
    case SYS_dup: case SYS_dup2: case SYS_dup3:
      if (result < (int64_t)sizeof r->self_mem_fds) r->self_mem_fds[result] = marked;
      return 0;
    case SYS_fcntl:
      if ((a->rsi == F_DUPFD || a->rsi == F_DUPFD_CLOEXEC) &&
          result < (int64_t)sizeof r->self_mem_fds)
        r->self_mem_fds[result] = marked;
      return 0;
    case SYS_close:
      if (fd < sizeof r->self_mem_fds) r->self_mem_fds[fd] = 0;
      return 0;
    case SYS_write: case SYS_writev: case SYS_pwrite64: case SYS_pwritev: case SYS_pwritev2:
      return marked && result > 0 && is_self_mem(r, fd);
  }
  return 0;
}

/* The memory a write through the tracee's own /proc/PID/mem changed: [offset, +result), the
 * offset from the syscall, or for write/writev the file position it started at. */
/* Where a write-family syscall that wrote `result` bytes through fd a->rdi started in the
 * file: its offset argument, or for write/writev the file position before it. -1 if unknown. */
static int64_t write_start(struct rrv_recorder *r, int64_t nr, const struct rrv_regs *a,
                           int64_t result) {
  if (nr == SYS_pwrite64 || nr == SYS_pwritev || nr == SYS_pwritev2)
    return a->r10;          /* the offset (pwritev's pos_l holds all 64 bits) */
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/%d/fdinfo/%d", r->pid, (int)a->rdi);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  if (fd >= 0) close(fd);
  unsigned long long pos;
  if (n <= 0) return -1;
  buf[n] = 0;
  if (sscanf(buf, "pos: %llu", &pos) != 1) return -1;
  return (int64_t)pos - result;
}

static int capture_self_mem_write(struct rrv_recorder *r, size_t ev, int64_t nr,
                                  const struct rrv_regs *a, int64_t result) {
  int64_t start = write_start(r, nr, a, result);
  return start < 0 ? -1 : capture(r, ev, start, result);
}

/* A write to a file the tracee has mapped shared changes what that mapping shows: in replay,
 * where the write is emulated, the data must reach the memfd that stands for the file (a
 * read-only mapping cannot be written through). The event's extra then says where: struct
 * rrv_file_write, a mapping of the file and the file offset the data went to. Only looked for
 * once the tracee has made a shared file mapping. Returns 0 (nothing to add), 1 (*fw set), or
 * -1. */
static int shared_mapping_of_write(struct rrv_recorder *r, int64_t nr, const struct rrv_regs *a,
                                   int64_t result, struct rrv_file_write *fw) {
  char path[64];
  struct stat st;
  snprintf(path, sizeof path, "/proc/%d/fd/%d", r->pid, (int)a->rdi);
  if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) return 0;
  int64_t start = write_start(r, nr, a, result);
  if (start < 0 || !maps_shared_object(r->pid, st.st_dev, st.st_ino, &fw->mapping)) return 0;
  fw->offset = start;
  return 1;
}

static int unsupported(struct rrv_recorder *r, int64_t nr, const char *fmt, const char *what) {
  r->stop_what = RRV_UNSUP_SYSCALL;
  r->stop_nr = nr;
  snprintf(r->message, sizeof r->message, fmt, what);
  return RRV_STOP_UNSUPPORTED;
}

/* An event begun but never sealed (its syscall could not be recorded) is dropped: the trace
 * ends at the last whole event. */
static void event_abort(struct rrv_recorder *r) {
  if (r->open_event != (size_t)-1) r->len = r->open_event;
  r->open_event = (size_t)-1;
}

static int fail(struct rrv_recorder *r, const char *what);

/* Every live process of a recording, whichever tracer thread traces it: what a check across
 * processes that must not depend on where each runs reads (refuse_shared_with_another). */
struct rrv_recording {
  pthread_mutex_t lock;
  int *pids;
  int n, cap;
};

struct rrv_recording *rrv_recording_new(void) {
  struct rrv_recording *g = calloc(1, sizeof *g);
  if (g) pthread_mutex_init(&g->lock, NULL);
  return g;
}

void rrv_recording_free(struct rrv_recording *g) {
  if (!g) return;
  pthread_mutex_destroy(&g->lock);
  free(g->pids);
  free(g);
}

static int recording_add(struct rrv_recording *g, int pid) {
  int rc = 0;
  pthread_mutex_lock(&g->lock);
  int k = 0;
  while (k < g->n && g->pids[k] != pid) k++;
  if (k == g->n) {       /* (a process handed over is in it already) */
    if (g->n == g->cap) {
      int cap = g->cap ? 2 * g->cap : 64;
      int *pids = realloc(g->pids, cap * sizeof *pids);
      if (pids) {
        g->pids = pids;
        g->cap = cap;
      }
    }
    if (g->n < g->cap)
      g->pids[g->n++] = pid;
    else
      rc = -1;
  }
  pthread_mutex_unlock(&g->lock);
  return rc;
}

static void recording_remove(struct rrv_recording *g, int pid) {
  pthread_mutex_lock(&g->lock);
  for (int k = 0; k < g->n; k++)
    if (g->pids[k] == pid) {
      g->pids[k] = g->pids[--g->n];
      break;
    }
  pthread_mutex_unlock(&g->lock);
}

/* The pids of the recording's live processes now (*n of them; malloc'd), or NULL. */
static int *recording_pids(struct rrv_recording *g, int *n) {
  pthread_mutex_lock(&g->lock);
  int *pids = malloc((g->n ? g->n : 1) * sizeof *pids);
  *n = pids ? g->n : 0;
  if (pids) memcpy(pids, g->pids, g->n * sizeof *pids);
  pthread_mutex_unlock(&g->lock);
  return pids;
}

/* A process is gone: out of the session's alive[] (its last entry moves into its place). */
static void session_forget(struct rrv_session *s, int index) {
  for (int k = 0; k < s->live; k++)
    if (s->alive[k] == index) {
      s->alive[k] = s->alive[--s->live];
      return;
    }
}

/* Processes that share writable memory run user code one at a time: the one holding the
 * session's token. A member gives the token up as it goes into the kernel (its shared mappings
 * are hashed then) and needs it back at the syscall's exit stop, where what the others changed
 * meanwhile becomes writes of its syscall event (on_syscall_exit), which replay applies. */
static void leave_sharing(struct rrv_recorder *r) {
  if (r->session && r->session->token_holder == r->index) r->session->token_holder = -1;
  r->shared_member = 0;
  r->awaiting_token = 0;
  mem_snapshot_free(r->shared_snapshot);
  r->shared_snapshot = NULL;
}

static int release_token(struct rrv_recorder *r) {
  if (r->session->token_holder == r->index) r->session->token_holder = -1;
  if (!r->shared_snapshot && !(r->shared_snapshot = mem_snapshot_take(r->pid, 1)))
    return fail(r, "reading the memory it shares with other processes");
  return 0;
}

/* r, at a syscall's exit stop (or its birth), needs the token: 1 if it has it now, else 0 and
 * it waits (the session grants it when the holder goes into the kernel or ends). */
static int take_token(struct rrv_recorder *r, int why) {
  struct rrv_session *s = r->session;
  if (s->token_holder == r->index) return 1;
  if (s->token_holder < 0) {
    s->token_holder = r->index;
    return 1;
  }
  r->awaiting_token = why;
  r->token_wait_since_ns = rrv_now_ns();
  r->need_resume = 0;
  return 0;
}

static int record_exit(struct rrv_recorder *r, int status) {
  r->status = status;
  if (!r->gone) {
    r->gone = 1;
    r->need_resume = 0;
    leave_sharing(r);
    if (r->session) {
      session_forget(r->session, r->index);
      recording_remove(r->session->recording, r->pid);
    }
    rrv_forget_mem();
  }
  size_t ev = event_begin(r, RRV_EVENT_EXIT, status, NULL);
  if (ev == (size_t)-1) {
    snprintf(r->message, sizeof r->message, "out of memory");
    return RRV_STOP_ERROR;
  }
  event_end(r, ev);
  return RRV_STOP_EXITED;
}

static int fail(struct rrv_recorder *r, const char *what) {
  int err = errno, status;
  event_abort(r);
  /* ESRCH: the tracee was killed from outside between two stops. It is a zombie now (or about
   * to be): its exit is the trace's last event, as when the kill is seen at a stop. */
  if (err == ESRCH && rrv_wait(r->pid, &status) == 0 &&
      (WIFEXITED(status) || WIFSIGNALED(status)))
    return record_exit(r, status);
  snprintf(r->message, sizeof r->message, "%s: %s", what, strerror(err));
  return RRV_STOP_ERROR;
}

void rrv_record_free(struct rrv_recorder *r) {
  free(r->buf);
  r->buf = NULL;
  r->len = r->cap = 0;
}

int rrv_record_init(struct rrv_recorder *r, int pid) {
  r->pid = pid;
  r->resume_op = PTRACE_CONT;
  if (!r->program_tsc_mode) r->program_tsc_mode = PR_TSC_ENABLE;
  r->open_event = (size_t)-1;
  r->last_checkpoint_ns = rrv_now_ns();
  if (!r->flush_at) r->flush_at = 256 << 10;
  if (!r->blob_threshold) r->blob_threshold = 64 << 10;
  r->last_flush_ns = rrv_now_ns();
  return ensure_room(r, 64 << 10);
}

/* A syscall the recorder answers itself instead of running it: `result`, and the tracee
 * memory [outs[i][0], +outs[i][1]) the recorder wrote, are recorded like any syscall's, and
 * replay injects them. exit_stop: the tracee goes on through a syscall exit (the kernel skips
 * the syscall), so a signal there is one at this syscall's exit; a vsyscall has none. */
static int record_answer(struct rrv_recorder *r, int64_t nr, const struct rrv_regs *regs,
                         uint64_t fpu, int64_t result, int flags, const uint64_t outs[][2],
                         int nouts, int exit_stop) {
  struct rrv_regs after = *regs;
  after.orig_rax = -1;
  after.rax = result;
  if (rrv_setregs(r->pid, &after) < 0) return fail(r, "PTRACE_SETREGS");
  size_t ev = event_begin(r, RRV_EVENT_SYSCALL, nr, regs);
  if (ev == (size_t)-1) return fail(r, "out of memory");
  event_at(r, ev)->result = result;
  event_at(r, ev)->flags = flags;
  event_at(r, ev)->fpu_digest = fpu;
  for (int i = 0; i < nouts; i++)
    if (capture(r, ev, outs[i][0], outs[i][1])) return fail(r, "recording a syscall's output");
  event_end(r, ev);
  r->syscalls++;
  r->after_syscall = exit_stop;
  r->exit_regs = after;
  return 0;
}

/* The legacy vsyscall page's time, gettimeofday and getcpu: the kernel emulates them on a
 * page fault, runs the seccomp filter, and has no syscall exit. The recorder answers them
 * (on the tracee's CPU, which it shares) and the kernel, seeing the syscall skipped, returns
 * to the caller. */
static int answer_vsyscall(struct rrv_recorder *r, int64_t nr, const struct rrv_regs *regs,
                           uint64_t fpu) {
  uint64_t outs[2][2] = {{0}};
  int n = 0;
  int64_t result = 0;
  if (nr == SYS_time) {
    int64_t t = time(NULL);
    result = t;
    if (regs->rdi && rrv_write_mem(r->pid, regs->rdi, &t, 8) == 8) outs[n][0] = regs->rdi, outs[n++][1] = 8;
  } else if (nr == SYS_gettimeofday) {
    struct timeval tv;
    struct { int minuteswest, dsttime; } tz = {0, 0};
    gettimeofday(&tv, NULL);
    if (regs->rdi && rrv_write_mem(r->pid, regs->rdi, &tv, sizeof tv) == sizeof tv)
      outs[n][0] = regs->rdi, outs[n++][1] = sizeof tv;
    if (regs->rsi && rrv_write_mem(r->pid, regs->rsi, &tz, sizeof tz) == sizeof tz)
      outs[n][0] = regs->rsi, outs[n++][1] = sizeof tz;
  } else if (nr == SYS_getcpu) {
    unsigned cpu = sched_getcpu(), node = 0;
    if (regs->rdi && rrv_write_mem(r->pid, regs->rdi, &cpu, 4) == 4) outs[n][0] = regs->rdi, outs[n++][1] = 4;
    if (regs->rsi && rrv_write_mem(r->pid, regs->rsi, &node, 4) == 4) outs[n][0] = regs->rsi, outs[n++][1] = 4;
  } else {
    result = -ENOSYS;
  }
  return record_answer(r, nr, regs, fpu, result, 0, outs, n, 0);
}

/* prctl on what the recorder set for itself, answered with the program's own view: the tracee
 * runs with no_new_privs and a seccomp filter, which the program did not ask for (PR_GET_SECCOMP
 * says 0: a program's own filter is refused); and with rdtsc trapped (PR_SET_TSC/PR_GET_TSC: a
 * program in PR_TSC_SIGSEGV mode gets its rdtsc's SIGSEGV, recorder.c: on_signal). */
static int answer_prctl_view(struct rrv_recorder *r, int64_t nr, const struct rrv_regs *regs,
                            uint64_t fpu) {
  if (regs->rdi == PR_GET_SECCOMP) {     /* the mode of the program's own filters, if any */
    const struct program_filters *pf = r->program_filters;
    int mode = !pf ? 0 : pf->strict ? SECCOMP_MODE_STRICT : SECCOMP_MODE_FILTER;
    return record_answer(r, nr, regs, fpu, mode, 0, NULL, 0, 1);
  }
  if (regs->rdi == PR_GET_NO_NEW_PRIVS)
    return record_answer(r, nr, regs, fpu, r->program_no_new_privs, 0, NULL, 0, 1);
  if (regs->rdi == PR_SET_NO_NEW_PRIVS) {   /* already set for the tracee: only the view changes */
    if (regs->rsi != 1 || regs->rdx || regs->r10 || regs->r8)
      return record_answer(r, nr, regs, fpu, -EINVAL, 0, NULL, 0, 1);
    r->program_no_new_privs = 1;
    return record_answer(r, nr, regs, fpu, 0, 0, NULL, 0, 1);
  }
  uint64_t outs[1][2] = {{regs->rsi, 4}};
  if (regs->rdi == PR_GET_TSC) {
    int mode = r->program_tsc_mode;
    if (rrv_write_mem(r->pid, regs->rsi, &mode, 4) != 4)
      return record_answer(r, nr, regs, fpu, -EFAULT, 0, outs, 0, 1);
    return record_answer(r, nr, regs, fpu, 0, 0, outs, 1, 1);
  }
  if (regs->rsi != PR_TSC_ENABLE && regs->rsi != PR_TSC_SIGSEGV)
    return record_answer(r, nr, regs, fpu, -EINVAL, 0, outs, 0, 1);
  r->program_tsc_mode = regs->rsi;
  return record_answer(r, nr, regs, fpu, 0, 0, outs, 0, 1);
}



/* The clone flags of a fork-family syscall at its entry (clone3: from its struct clone_args;
 * 0 if unreadable, and then the kernel refuses it too). */
static uint64_t clone_flags(int pid, int64_t nr, const struct rrv_regs *a) {
  uint64_t flags = 0;
  switch (nr) {
    case SYS_fork: return SIGCHLD;
    case SYS_vfork: return RRV_CLONE_VM | RRV_CLONE_VFORK | SIGCHLD;
    case SYS_clone: return a->rdi;
    case SYS_clone3:
      if (a->rsi >= 64) rrv_read_mem(pid, a->rdi, &flags, 8);
      return flags;
  }
  return 0;
}

/* A fork-family syscall about to run: refused if what it makes is not a process of its own
 * (threads, a child running in the caller's memory at the same time, namespaces, a child
 * that would escape the tracer); for a vfork the caller's writable memory is hashed, to find
 * what the child changed in it (shared_memory.c). */
static int begin_fork(struct rrv_recorder *r, int64_t nr, const struct rrv_regs *regs) {
  uint64_t flags = clone_flags(r->pid, nr, regs);
  const char *name = rrv_syscalls[nr].name;
  if (flags & RRV_CLONE_THREAD)
    return unsupported(r, nr, "%s of a thread (CLONE_THREAD): threads are not supported yet", name);
  if ((flags & RRV_CLONE_VM) && !(flags & RRV_CLONE_VFORK))
    return unsupported(r, nr, "%s of a child that runs in its parent's memory alongside it "
                       "(CLONE_VM without CLONE_VFORK, a thread in all but name): not supported "
                       "yet", name);
  if (flags & RRV_NAMESPACE_FLAGS)
    return unsupported(r, nr, "%s into new namespaces (what the child would see changes)", name);
  if (flags & (RRV_CLONE_UNTRACED | RRV_CLONE_PTRACE))
    return unsupported(r, nr, "%s with CLONE_UNTRACED or CLONE_PTRACE (a child the recorder "
                       "would not follow)", name);
  uint64_t lo, hi;
  int sharing = !(flags & RRV_CLONE_VM) && shared_writable_mapping(r->pid, &lo, &hi);
  if (sharing) r->shared_member = 1;   /* the child shares it: both run user code one at a time */
  r->sc_clone_flags = flags;
  /* Processes that share memory buffer only what cannot wait for another, in short runs (the
   * token passes at ptrace stops; recorded at the fork's exit, and the child copies it). A
   * vfork child buffers into its parent's buffer, empty now (this stop flushed it), while
   * the parent waits in the kernel; the child's stops flush its records as its own. */
  if (r->syscallbuf && sharing) {
    if (syscallbuf_set_flags(r, RRV_HDR_SHARING, 0, NULL) < 0)
      return fail(r, "writing the syscall buffer");
    r->capture_buffer_flags = 1;
  }
  if (flags & RRV_CLONE_VM) {
    r->vfork_snapshot = mem_snapshot_take(r->pid, 0);
    if (!r->vfork_snapshot) return fail(r, "reading the memory a vfork child will share");
  }
  return 0;
}

struct vfork_capture { struct rrv_recorder *r; size_t ev; };

static int capture_changed_pages(void *ctx, uint64_t addr, uint64_t len) {
  struct vfork_capture *c = ctx;
  return capture(c->r, c->ev, addr, len);
}

/* At a vfork's exit in the parent: the pages its child changed become the event's writes. */
static int record_vfork_changes(struct rrv_recorder *r, size_t ev) {
  struct vfork_capture c = {r, ev};
  int rc = mem_snapshot_changes(r->vfork_snapshot, r->pid, 0, capture_changed_pages, &c);
  mem_snapshot_free(r->vfork_snapshot);
  r->vfork_snapshot = NULL;
  if (rc == -2) {
    event_abort(r);
    return unsupported(r, r->sc_nr, "%s: the vfork child mapped or unmapped memory in its "
                       "parent's address space (only changes of contents can be recorded)",
                       rrv_syscalls[r->sc_nr].name);
  }
  return rc ? fail(r, "recording what a vfork child changed in its parent's memory") : 0;
}

/* A handled signal that came while the process ran user code is delivered here, at its next
 * syscall's entry, an exact point: the syscall is skipped, set to restart (-ERESTARTNOINTR, so
 * that after the handler it is issued again), and the signal is raised from its exit stop. The
 * delivery stop that follows is recorded as a SIGNAL event flagged AT_SYSCALL_ENTRY
 * (on_signal), and replay does the same at the same syscall. */
static int deliver_held_signal(struct rrv_recorder *r, const struct rrv_regs *regs) {
  struct rrv_regs restart = *regs;
  restart.rax = -513;   /* -ERESTARTNOINTR */
  int status;
  int rc = rrv_skip_syscall(r->pid, &restart, &status);
  if (rc == -2) return record_exit(r, status);
  if (rc < 0) return fail(r, "skipping a syscall to deliver a signal");
  r->resume_op = PTRACE_CONT;
  r->resume_sig = r->held[0].sig;
  r->delivering_held = 1;
  r->after_syscall = 0;
  return 0;
}

/* The preload registers its thread's buffer and the memory it keeps for stubs. Answered by the
 * recorder: 0, with the buffer's flags as the answer's output (so replay sets them too), or
 * -ENOSYS when recording without syscall buffering (the preload then stays inert). */
static int on_preload_init(struct rrv_recorder *r, const struct rrv_regs *regs, uint64_t fpu) {
  struct rrv_preload_init init;
  if (!r->syscallbuf_allowed ||
      rrv_read_mem(r->pid, regs->rdi, &init, sizeof init) != sizeof init ||
      init.version != RRV_PRELOAD_VERSION || !init.buffer || !init.stubs)
    return record_answer(r, regs->orig_rax, regs, fpu, -ENOSYS, RRV_EF_REFUSED, NULL, 0, 1);
  r->syscallbuf = init.buffer;
  r->stubs = init.stubs;
  r->stubs_size = init.stubs_size;
  r->stubs_used = 0;
  r->hook_entry = init.hook_entry;
  r->nkept = 0;
  /* Buffered syscalls would pass by the filters a process installed (the recorder runs them
   * at each syscall); a process that takes turns (--serialize) buffers as a sharing one. */
  uint32_t flags = r->program_filters ? RRV_HDR_DISABLED
                   : r->shared_member ? RRV_HDR_SHARING : 0;
  uint32_t max_records = r->checkpoint_every < UINT32_MAX ? (uint32_t)r->checkpoint_every : 0;
  /* A flush is at most one frame's worth of events (flush_at), so that frames reach the
   * disk as often with buffering as without. */
  uint32_t size = r->flush_at < RRV_SYSCALLBUF_SIZE ? (uint32_t)r->flush_at : RRV_SYSCALLBUF_SIZE;
  uint64_t at = init.buffer + offsetof(struct rrv_syscallbuf_hdr, flags);
  uint64_t at_size = init.buffer + offsetof(struct rrv_syscallbuf_hdr, size);
  if (rrv_write_mem(r->pid, at, &flags, 4) != 4 || rrv_write_mem(r->pid, at_size, &size, 4) != 4 ||
      rrv_write_mem(r->pid, at_size + 4, &max_records, 4) != 4)
    return fail(r, "writing the syscall buffer");
  const uint64_t outs[2][2] = {{at, 4}, {at_size, 8}};   /* flags; size and max_records */
  return record_answer(r, regs->orig_rax, regs, fpu, 0, RRV_EF_REFUSED, outs, 2, 1);
}

/* Could this syscall stop be a site to patch: a syscall the preload buffers, from code that is
 * not the syscall page or a stub, of a process whose preload registered? */
static int patchable_stop(struct rrv_recorder *r, int64_t nr, const struct rrv_regs *regs) {
  if (!r->syscallbuf || r->program_filters || r->in_parent_memory || !is_buffered_number(nr))
    return 0;
  uint64_t site = regs->rip - 2;
  if ((site >= RRV_SYSCALL_PAGE && site < RRV_SYSCALL_PAGE + 4096) ||
      (site >= r->stubs && site < r->stubs + r->stubs_size))
    return 0;
  for (int i = 0; i < r->nkept; i++)
    if (r->kept_sites[i] == site) return 0;
  return r->nkept < (int)(sizeof r->kept_sites / sizeof r->kept_sites[0]);
}

/* PATCH_SITE decided: the site (sites[0], r->patch_site) and n - 1 other sites of the same
 * file become jumps to their stubs, written one after another at the next free places of the
 * stub memory (stub_at[k], which the caller computed them for), all recorded as one PATCH
 * event, and the syscall is not run now: the tracee goes back to the site, and makes it again
 * through the stub. Returns 0 or an RRV_STOP_*. */
int rrv_record_patch_sites(struct rrv_recorder *r, size_t n, const uint64_t *sites,
                           const uint64_t *stub_at, const uint8_t *const *jumps,
                           const uint64_t *jump_lens, const uint8_t *const *stubs,
                           const uint64_t *stub_lens) {
  struct rrv_regs regs;
  uint64_t fpu = 0;
  if (rrv_getregs(r->pid, &regs) < 0) return fail(r, "PTRACE_GETREGS");
  rrv_fpu_digest(r->pid, &fpu);
  if (n == 0 || sites[0] != r->patch_site)
    return fail(r, "patching a syscall site: not the stopped one");
  size_t fit = 0;     /* the sites whose stubs fit, laid out where the caller expected */
  for (uint64_t used = r->stubs_used; fit < n && stub_at[fit] == r->stubs + used &&
                                      used + stub_lens[fit] <= r->stubs_size; fit++)
    used += (stub_lens[fit] + 15) & ~(uint64_t)15;
  if (fit == 0) {
    rrv_record_keep_site(r);
    return 0;
  }
  n = fit;
  size_t ev = event_begin(r, RRV_EVENT_PATCH, (int)regs.orig_rax, &regs);
  if (ev == (size_t)-1) return fail(r, "out of memory");
  event_at(r, ev)->aux = sites[0];
  event_at(r, ev)->fpu_digest = fpu;
  for (size_t k = 0; k < n; k++) {
    /* The site's own pair must be written; another site that cannot be is left as it is
     * (its stub, if written, recorded: memory holds it), and so are the ones after it. */
    ssize_t w = rrv_write_mem(r->pid, stub_at[k], stubs[k], stub_lens[k]);
    if (w != (ssize_t)stub_lens[k]) {
      if (k == 0 || w > 0) return fail(r, "patching a syscall site");  /* (part written) */
      break;
    }
    if (event_add_write(r, ev, stub_at[k], stubs[k], stub_lens[k])) return fail(r, "out of memory");
    r->stubs_used += (stub_lens[k] + 15) & ~(uint64_t)15;
    w = rrv_write_mem(r->pid, sites[k], jumps[k], jump_lens[k]);
    if (w != (ssize_t)jump_lens[k]) {
      if (k == 0 || w > 0) return fail(r, "patching a syscall site");
      break;
    }
    if (event_add_write(r, ev, sites[k], jumps[k], jump_lens[k])) return fail(r, "out of memory");
    r->patched_sites++;
  }
  event_end(r, ev);
  struct rrv_regs after = regs;
  after.rip = sites[0];
  after.rax = regs.orig_rax;
  after.orig_rax = (uint64_t)-1;
  int status;
  int rc = rrv_skip_syscall(r->pid, &after, &status);
  if (rc == -2) return record_exit(r, status);
  if (rc < 0) return fail(r, "returning a patched syscall to its site");
  r->resume_op = PTRACE_CONT;
  r->after_syscall = 0;
  return 0;
}

/* PATCH_SITE decided: the site stays as it is (the patcher refused it); the syscall goes on
 * through ptrace, now and whenever it comes back. */
void rrv_record_keep_site(struct rrv_recorder *r) {
  if (r->nkept < (int)(sizeof r->kept_sites / sizeof r->kept_sites[0]))
    r->kept_sites[r->nkept++] = r->patch_site;
  r->redo_stop = 1;
}

static int on_syscall(struct rrv_recorder *r) {
  struct rrv_regs regs;
  uint64_t fpu = 0;
  if (rrv_getregs(r->pid, &regs) < 0) return fail(r, "PTRACE_GETREGS");
  rrv_fpu_digest(r->pid, &fpu);
  int64_t nr = (int64_t)regs.orig_rax;
  const struct rrv_syscall_spec *spec =
      nr >= 0 && nr < RRV_NSYSCALLS && rrv_syscalls[nr].handling ? &rrv_syscalls[nr] : NULL;
  r->after_syscall = 0;
  int flushed = syscallbuf_flush(r);
  if (flushed) return flushed;
  if (r->nheld && !r->delivering_held &&
      !(regs.rip >= RRV_VSYSCALL_PAGE && regs.rip < RRV_VSYSCALL_PAGE + 4096))
    return deliver_held_signal(r, &regs);
  if (r->program_filters) {   /* the program's own seccomp filters decide first, as in the kernel */
    uint32_t answer = program_filters_answer(r->program_filters, &regs);
    uint32_t action = answer & SECCOMP_RET_ACTION_FULL;
    if (action == SECCOMP_RET_ERRNO) {
      uint32_t err = answer & SECCOMP_RET_DATA;
      return record_answer(r, nr, &regs, fpu, -(int64_t)(err > 4095 ? 4095 : err),
                           RRV_EF_REFUSED, NULL, 0, 1);
    }
    if (action == SECCOMP_RET_TRACE)      /* no tracer of its own: ENOSYS, as the kernel says */
      return record_answer(r, nr, &regs, fpu, -ENOSYS, RRV_EF_REFUSED, NULL, 0, 1);
    if (action != SECCOMP_RET_ALLOW && action != SECCOMP_RET_LOG)
      return unsupported(r, nr, "%s: the program's own seccomp filter kills or traps it here "
                         "(only ALLOW, LOG, ERRNO and TRACE answers are supported yet)",
                         spec ? spec->name : "this syscall");
  }
  if (regs.rip >= RRV_VSYSCALL_PAGE && regs.rip < RRV_VSYSCALL_PAGE + 4096)
    return answer_vsyscall(r, nr, &regs, fpu);
  if (nr == RRV_CALL_PRELOAD_INIT) return on_preload_init(r, &regs, fpu);
  if (patchable_stop(r, nr, &regs)) {
    r->patch_site = regs.rip - 2;
    return RRV_STOP_PATCH_SITE;
  }
  if (!spec && (nr < 0 || nr >= RRV_NUMBERS || !rrv_assigned[nr]))
    /* No kernel has it: ENOSYS, as without rrverify. */
    return record_answer(r, nr, &regs, fpu, -ENOSYS, RRV_EF_REFUSED, NULL, 0, 1);
  if (!spec) return unsupported(r, nr, "%s syscall is not in rrverify's syscall table", "this");
  if (spec->handling == RRV_H_UNSUPPORTED) return unsupported(r, nr, "%s", spec->name);
  if (spec->irregular == RRV_IRR_PRCTL &&
      (regs.rdi == PR_SET_TSC || regs.rdi == PR_GET_TSC || regs.rdi == PR_GET_SECCOMP ||
       regs.rdi == PR_GET_NO_NEW_PRIVS || regs.rdi == PR_SET_NO_NEW_PRIVS))
    return answer_prctl_view(r, nr, &regs, fpu);
  if (spec->irregular == RRV_IRR_IOCTL) {
    int unknown;
    legacy_ioctl_or_unknown(regs.rsi & 0xffffffff, &unknown);
    if (unknown) {
      r->stop_what = RRV_UNSUP_SYSCALL;
      r->stop_nr = nr;
      snprintf(r->message, sizeof r->message, "command 0x%llx is not _IOC-encoded (its number "
               "does not say what it writes) and not in rrverify's ioctl table",
               (unsigned long long)(regs.rsi & 0xffffffff));
      return RRV_STOP_UNSUPPORTED;
    }
  }
  if (spec->irregular == RRV_IRR_UNSHARE && (regs.rdi & RRV_NAMESPACE_FLAGS))
    return unsupported(r, nr, "%s of namespaces (what the program would see changes)", "unshare");
  if (spec->irregular == RRV_IRR_PROCESS_VM && regs.rdi != (uint64_t)r->pid)
    return unsupported(r, nr, "%s on another process", spec->name);
  int installs_filter = (nr == SYS_seccomp && regs.rdi <= SECCOMP_SET_MODE_FILTER) ||
                        (spec->irregular == RRV_IRR_PRCTL && regs.rdi == PR_SET_SECCOMP);
  if (installs_filter) {     /* kept and run by the recorder (program_filter.c) */
    int strict = nr == SYS_seccomp ? regs.rdi == SECCOMP_SET_MODE_STRICT
                                   : regs.rsi == SECCOMP_MODE_STRICT;
    uint64_t flags = nr == SYS_seccomp ? regs.rsi : 0, prog = nr == SYS_seccomp ? regs.rdx : regs.rdx;
    if (flags & ~(uint64_t)(SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_LOG |
                            SECCOMP_FILTER_FLAG_SPEC_ALLOW | SECCOMP_FILTER_FLAG_TSYNC_ESRCH))
      return unsupported(r, nr, "%s with a user-notification listener", "seccomp");
    if (nr != SYS_seccomp && regs.rsi != SECCOMP_MODE_STRICT && regs.rsi != SECCOMP_MODE_FILTER)
      return record_answer(r, nr, &regs, fpu, -EINVAL, RRV_EF_REFUSED, NULL, 0, 1);
    int rc = program_filters_add((struct program_filters **)&r->program_filters, r->pid, prog,
                                 strict, r->program_no_new_privs);
    if (rc || !r->syscallbuf)
      return record_answer(r, nr, &regs, fpu, rc, RRV_EF_REFUSED, NULL, 0, 1);
    /* From now on every syscall goes through ptrace, where the recorder runs the filters. */
    if (syscallbuf_set_flags(r, RRV_HDR_DISABLED, 0, NULL) < 0)
      return fail(r, "writing the syscall buffer");
    const uint64_t outs[1][2] = {{r->syscallbuf + offsetof(struct rrv_syscallbuf_hdr, flags), 4}};
    return record_answer(r, nr, &regs, fpu, rc, RRV_EF_REFUSED, outs, 1, 1);
  }

  if (spec->handling == RRV_H_REFUSE)
    return record_answer(r, nr, &regs, fpu, -ENOSYS, RRV_EF_REFUSED, NULL, 0, 1);
  if (spec->handling == RRV_H_EXIT) {
    if (!r->exit_checkpoint_offered) {  /* the final state, before it is gone: Python decides */
      r->exit_checkpoint_offered = 1;
      r->exit_pending = 1;
      return RRV_STOP_CHECKPOINT_AT_EXIT;
    }
    r->exit_checkpoint_offered = 0;
    if (r->parked) {   /* issued again after the checkpoint: the program's own mask back */
      r->parked = 0;
      if (rrv_set_sigmask(r->pid, r->parked_mask) < 0) return fail(r, "PTRACE_SETSIGMASK");
    }
    size_t ev = event_begin(r, RRV_EVENT_SYSCALL, nr, &regs);
    if (ev == (size_t)-1) return fail(r, "out of memory");
    event_at(r, ev)->fpu_digest = fpu;
    event_end(r, ev);
    r->syscalls++;
    return 0;
  }

  if (spec->handling == RRV_H_FORK) {
    int rc = begin_fork(r, nr, &regs);
    if (rc) return rc;
  }
  /* read before the syscall: oldact may be the same buffer */
  r->sc_sets_segv = nr == SYS_rt_sigaction && (int)regs.rdi == SIGSEGV && regs.rsi &&
      rrv_read_mem(r->pid, regs.rsi, r->sc_new_segv, sizeof r->sc_new_segv) ==
          sizeof r->sc_new_segv;
  /* The syscall runs while the session goes on with other processes (it may wait for one of
   * them): its exit stop is handled by on_syscall_exit. */
  r->in_syscall = 1;
  r->sc_nr = nr;
  r->sc_regs = regs;
  r->sc_fpu = fpu;
  r->resume_op = PTRACE_SYSCALL;
  return 0;
}

static int find_process(const struct rrv_session *s, int pid);

/* A file (or memfd, or /dev/shm object) the process just mapped shared, which another process
 * maps shared too, one of them writable: memory they share, which only processes that share it from a fork are run
 * one at a time for (take_token). Two that map one object each on their own are refused. */
static int refuse_shared_with_another(struct rrv_recorder *r, int fd, int writable) {
  char path[64], target[256];
  struct stat st;
  snprintf(path, sizeof path, "/proc/%d/fd/%d", r->pid, fd);
  if (stat(path, &st) < 0) return 0;
  ssize_t n = readlink(path, target, sizeof target - 1);
  target[n > 0 ? n : 0] = 0;
  struct rrv_session *s = r->session;
  /* every live process of the recording, traced by this thread or another */
  int npids = 0, *pids = recording_pids(s->recording, &npids), rc = 0;
  if (!pids) return fail(r, "out of memory");
  for (int k = 0; k < npids && !rc; k++) {
    int i = find_process(s, pids[k]), pid = pids[k];
    struct rrv_recorder *other = i >= 0 ? s->procs[i] : NULL;    /* NULL: another thread's */
    if (pid == r->pid || (other && (other->gone || (other->shared_member && r->shared_member))))
      continue;      /* (processes sharing memory from a fork are always one thread's) */
    int other_maps = maps_shared_object(pid, st.st_dev, st.st_ino, NULL);
    if (other_maps == 2 || (other_maps && writable)) {
      event_abort(r);
      r->stop_what = RRV_UNSUP_SHARED_MEMORY;
      snprintf(r->message, sizeof r->message, "processes %d and %d both map %s shared, each on "
               "its own: memory shared that way is not supported yet (only what a fork "
               "shares)", pid, r->pid, target);
      rc = RRV_STOP_UNSUPPORTED;
    }
  }
  free(pids);
  return rc;
}

static int on_syscall_exit(struct rrv_recorder *r) {
  r->in_syscall = 0;
  int64_t nr = r->sc_nr;
  const struct rrv_syscall_spec *spec = &rrv_syscalls[nr];
  struct rrv_regs regs = r->sc_regs;
  uint64_t fpu = r->sc_fpu;
  uint64_t *new_segv_action = r->sc_new_segv;
  int sets_segv_action = r->sc_sets_segv;
  struct rrv_regs after;
  if (rrv_getregs(r->pid, &after) < 0) return fail(r, "PTRACE_GETREGS");
  int64_t result = (int64_t)after.rax;
  r->after_syscall = 1;
  r->exit_regs = after;
  if (sets_segv_action && result == 0)
    memcpy(r->segv_action, new_segv_action, sizeof r->segv_action);
  if ((nr == SYS_rt_sigprocmask || nr == SYS_rt_sigreturn) &&
      rrv_get_sigmask(r->pid, &r->known_mask) < 0)
    return fail(r, "PTRACE_GETSIGMASK");
  int self_target = regs.rdi == 0 || regs.rdi == (uint64_t)r->pid;
  if (nr == SYS_sched_setaffinity && result == 0 && self_target) r->own_affinity = 1;
  if (nr == SYS_sched_getaffinity && result > 0 && self_target && !r->own_affinity &&
      r->session && r->session->cpu_view_bytes) {
    /* The CPUs it would run on without the recorder, who pinned it to its own CPU: what
     * nproc and make -j$(nproc) go by. Recorded as the syscall's output like any. */
    size_t n = (size_t)result < sizeof r->session->cpu_view ? (size_t)result
                                                             : sizeof r->session->cpu_view;
    if (rrv_write_mem(r->pid, regs.rdx, r->session->cpu_view, n) != (ssize_t)n)
      return fail(r, "showing the tracee its CPUs");
  }
  note_action_set(r, nr, regs.rdi, regs.rsi, result);
  if (nr == SYS_sigaltstack && result == 0 && regs.rdi) r->altstack_set = 1;
  if (spec->handling == RRV_H_EXEC && result == 0) {   /* handlers reset, SIG_IGN kept */
    r->actions_set = 0;     /* and every action's flags and mask cleared */
    uint64_t ignored = r->segv_action[0] == (uint64_t)(uintptr_t)SIG_IGN;
    memset(r->segv_action, 0, sizeof r->segv_action);
    r->segv_action[0] = ignored ? (uint64_t)(uintptr_t)SIG_IGN : 0;
  }

  size_t ev = event_begin(r, RRV_EVENT_SYSCALL, nr, &regs);
  if (ev == (size_t)-1) return fail(r, "out of memory");
  event_at(r, ev)->result = result;
  event_at(r, ev)->fpu_digest = fpu;
  if (r->shared_snapshot) {  /* what other processes changed in the memory it shares */
    struct vfork_capture c = {r, ev};
    int rc = mem_snapshot_changes(r->shared_snapshot, r->pid, 1, capture_changed_pages, &c);
    mem_snapshot_free(r->shared_snapshot);
    r->shared_snapshot = NULL;
    if (rc) return fail(r, "recording what other processes changed in shared memory");
  }
  if (r->capture_buffer_flags) {
    r->capture_buffer_flags = 0;
    if (capture(r, ev, r->syscallbuf + offsetof(struct rrv_syscallbuf_hdr, flags), 4))
      return fail(r, "out of memory");
  }
  if (r->vfork_snapshot) {   /* what the vfork child changed in the memory it shared */
    if (r->syscallbuf && syscallbuf_reset_after_child(r) < 0)
      return fail(r, "writing the syscall buffer");
    int rc = record_vfork_changes(r, ev);
    if (rc) return rc;
    event_at(r, ev)->flags |= RRV_EF_VFORK;
  }
  if (result >= 0) {
    if (capture_outputs(r, ev, spec, &regs, result))
      return fail(r, "recording a syscall's output");
    event_at(r, ev)->aux = rrv_sent_digest(r->pid, spec, &regs, result, -1);
    if (track_self_mem(r, nr, &regs, result) && capture_self_mem_write(r, ev, nr, &regs, result))
      return fail(r, "recording a write to the tracee's own memory");
    /* A write through its own /proc/PID/mem changes its memory: writes go through ptrace
     * from now on, where the recorder records that (capture_self_mem_write). */
    if (r->syscallbuf && (nr == SYS_open || nr == SYS_openat || nr == SYS_openat2) &&
        result < (int64_t)sizeof r->self_mem_fds && r->self_mem_fds[result]) {
      int rc = syscallbuf_set_flags_at(r, ev, RRV_HDR_NO_WRITES);
      if (rc) return rc;
    }
    struct rrv_file_write fw;
    int shared = rrv_sends_data(spec) && result > 0 && r->shared_file_mapped ?
                     shared_mapping_of_write(r, nr, &regs, result, &fw) : 0;
    if (shared < 0 || (shared > 0 && event_add_extra(r, ev, &fw, sizeof fw)))
      return fail(r, "recording a write to a file mapped shared");
    struct rrv_pipe_io io[2];   /* never with `shared`: a pipe is no regular file */
    int npipes = pipe_io_of(r->pid, nr, &regs, result, io);
    if (npipes < 0) {           /* its buffer vanished meanwhile: no hash to check */
      io[0].direction = RRV_PIPE_UNTRACKED;
      io[0].hash = 0;
      npipes = 1;
    }
    if (npipes > 0) {
      event_at(r, ev)->flags |= RRV_EF_PIPE;
      if (event_add_extra(r, ev, io, npipes * sizeof io[0]))
        return fail(r, "out of memory");
    }
    if (nr == SYS_mmap && (regs.r10 & MAP_SHARED) /* or MAP_SHARED_VALIDATE */ &&
        !(regs.r10 & MAP_ANONYMOUS) && (int)regs.r8 >= 0) {
      r->shared_file_mapped = 1;
      int rc = refuse_shared_with_another(r, (int)regs.r8, (regs.rdx & PROT_WRITE) != 0);
      if (rc) return rc;
      /* Writes to a file it maps shared show in its memory: they go through ptrace from now
       * on, where the recorder records that (shared_mapping_of_write). Not for a read-only
       * mapping through a read-only descriptor (glibc's gconv and locale caches): a program
       * that writes such a file through another descriptor diverges in replay (docs/checks.md
       * §14 limits). */
      if (r->syscallbuf && ((regs.rdx & PROT_WRITE) || fd_writable(r->pid, (int)regs.r8)) &&
          (rc = syscallbuf_set_flags_at(r, ev, RRV_HDR_NO_WRITES)))
        return rc;
    }
    if (nr == SYS_mmap && !(regs.r10 & MAP_ANONYMOUS) && (int)regs.r8 >= 0) {
      uint64_t index = 0;
      if (rrv_py_file_mapped(r->handle, r->pid, (int)regs.r8, regs.r9, regs.rsi, &index)) {
        event_abort(r);
        snprintf(r->message, sizeof r->message, "cannot identify the file mapped from fd %d",
                 (int)regs.r8);
        return RRV_STOP_ERROR;
      }
      event_at(r, ev)->aux = index + 1;
    }
  }
  event_end(r, ev);
  r->syscalls++;
  if (result == -516) {   /* -ERESTART_RESTARTBLOCK: restart_syscall will continue it */
    r->restart_nr = nr;
    r->restart_args = regs;
  }
  if (spec->handling == RRV_H_EXEC && result == 0) {
    r->syscallbuf = 0;      /* a new image: its preload registers anew */
    r->stubs = r->stubs_size = r->stubs_used = 0;
    r->nkept = 0;
    r->signal_delivered = 0;  /* no signal frame survives an exec */
    r->in_parent_memory = 0;
    return RRV_STOP_EXEC;
  }
  /* A checkpoint is due: the tracee sits at this syscall's exit stop, the one kind of point
   * where checkpoints are taken (and where replay can stop to compare). */
  if (checkpoint_due(r, 0)) return RRV_STOP_CHECKPOINT;
  return 0;
}

static int same_regs(const struct rrv_regs *a, const struct rrv_regs *b) {
  return memcmp(a, b, sizeof *a) == 0;
}


/* A signal that arrived while the process ran user code, where no exact point is known. One
 * it handles is held (not delivered now) until its next syscall's entry (deliver_held_signal):
 * POSIX allows the delay. One without a handler changes nothing in the process, or ends it:
 * delivered at once, and a fatal one is recorded (flagged ASYNC_FATAL) before the exit. */
static int on_async_signal(struct rrv_recorder *r, int sig, const siginfo_t *si,
                           const struct rrv_regs *regs, uint64_t fpu) {
  uint64_t caught = 0, ignored = 0, blocked = 0, bit = 1ull << (sig - 1);
  if (rrv_signal_sets(r->pid, &caught, &ignored, &blocked) < 0)
    return fail(r, "reading the tracee's signal dispositions");
  if (caught & bit) {
    if (r->nheld == RRV_MAX_HELD) {
      r->stop_what = RRV_UNSUP_SIGNAL;
      r->stop_nr = sig;
      snprintf(r->message, sizeof r->message, "more than %d handled signals arrived while "
               "process %d ran user code without a syscall", RRV_MAX_HELD, r->pid);
      return RRV_STOP_UNSUPPORTED;
    }
    if (!r->nheld) r->held_since_ns = rrv_now_ns();
    r->held[r->nheld].sig = sig;
    memcpy(r->held[r->nheld].info, si, sizeof r->held[0].info);
    r->nheld++;
    return 0;
  }
  int no_effect = (ignored & bit) || sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH ||
                  sig == SIGCONT || sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN ||
                  sig == SIGTTOU;    /* ignored, or a job-control stop (seen as a group stop) */
  if (!no_effect) {
    int flushed = syscallbuf_flush(r);
    if (flushed) return flushed;
    size_t ev = event_begin(r, RRV_EVENT_SIGNAL, sig, regs);
    if (ev == (size_t)-1) return fail(r, "out of memory");
    event_at(r, ev)->flags = RRV_EF_ASYNC_FATAL;
    event_at(r, ev)->fpu_digest = fpu;
    if (event_add_extra(r, ev, si, sizeof(siginfo_t))) return fail(r, "out of memory");
    event_end(r, ev);
  }
  r->resume_sig = sig;
  return 0;
}

static int complete_buffered_as_traced(struct rrv_recorder *r, struct rrv_regs *regs);

static int on_signal(struct rrv_recorder *r, int sig) {
  siginfo_t si;
  struct rrv_regs regs;
  uint64_t fpu = 0;
  if (ptrace(PTRACE_GETSIGINFO, r->pid, 0, &si) < 0) return fail(r, "PTRACE_GETSIGINFO");
  if (rrv_getregs(r->pid, &regs) < 0) return fail(r, "PTRACE_GETREGS");
  rrv_fpu_digest(r->pid, &fpu);
  if (r->syscallbuf && regs.rip == RRV_UNTRACED_SYSCALL + 2 && !r->test_no_unwind) {
    int rc = complete_buffered_as_traced(r, &regs);
    if (rc) return rc;
  }
  /* Still at the last syscall's exit if no user code ran since (the registers say so): so are
   * further signals that follow one without a handler (SIGSTOP, then SIGCONT). */
  int after_syscall = r->after_syscall && same_regs(&regs, &r->exit_regs);

  if (RRV_FOREIGN_SYSCALL(sig, &si)) {   /* never run: the filter trapped it */
    r->stop_what = RRV_UNSUP_FOREIGN_SYSCALL;
    r->stop_nr = si.si_syscall;
    r->stop_arch = si.si_arch;
    r->stop_addr = (uint64_t)(uintptr_t)si.si_call_addr;
    return RRV_STOP_UNSUPPORTED;
  }
  int rdtscp;
  /* A trapped rdtsc is answered here, unless the program asked for PR_TSC_SIGSEGV itself:
   * then it is the fault the program expects, recorded and delivered as one. */
  if (sig == SIGSEGV && si.si_code == SI_KERNEL && r->program_tsc_mode != PR_TSC_SIGSEGV &&
      rrv_is_rdtsc(r->pid, regs.rip, &rdtscp)) {
    int flushed = syscallbuf_flush(r);
    if (flushed) return flushed;
    unsigned aux = 0;
    uint64_t tsc = rdtscp ? __rdtscp(&aux) : __rdtsc();
    if (rrv_complete_rdtsc(r->pid, &regs, tsc, aux, rdtscp) < 0)
      return fail(r, "PTRACE_SETREGS");
    r->last_trap = RRV_TRAP_RDTSC;
    size_t ev = event_begin(r, RRV_EVENT_RDTSC, 0, &regs);
    if (ev == (size_t)-1) return fail(r, "out of memory");
    event_at(r, ev)->result = tsc;
    event_at(r, ev)->aux = aux;
    event_at(r, ev)->flags = rdtscp ? RRV_EF_RDTSCP : 0;
    event_at(r, ev)->fpu_digest = fpu;
    /* With SIGSEGV blocked or ignored, the kernel forcing it for the trap unblocked it and
     * reset its handler to SIG_DFL: the program's own state is put back (by the driver,
     * RRV_STOP_SEGV_RESTORE), and the event says what, for replay to do the same. */
    int blocked = (r->known_mask >> (SIGSEGV - 1)) & 1;
    if (blocked || r->segv_action[0] == (uint64_t)(uintptr_t)SIG_IGN) {
      struct { uint64_t mask, action[4]; } restore = {r->known_mask, {0}};
      memcpy(restore.action, r->segv_action, sizeof restore.action);
      event_at(r, ev)->flags |= RRV_EF_SEGV_RESTORE;
      if (event_add_extra(r, ev, &restore, sizeof restore)) return fail(r, "out of memory");
      event_end(r, ev);
      memcpy(&r->segv_restore, &restore, sizeof restore);
      return RRV_STOP_SEGV_RESTORE;
    }
    event_end(r, ev);
    return 0;
  }
  /* Faults and traps are raised by the instruction at ip: replay re-executes it and gets the
   * same signal. (int3 and general-protection faults report SI_KERNEL.) */
  int fault = (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE ||
               sig == SIGTRAP) && si.si_code > 0;
  if (fault) r->last_trap = RRV_TRAP_OTHER;
  if (fault && r->syscallbuf) {
    uint32_t in_hook = 0;
    rrv_read_mem(r->pid, r->syscallbuf + offsetof(struct rrv_syscallbuf_hdr, in_hook),
                 &in_hook, 4);
    if (in_hook) {
      r->stop_what = RRV_UNSUP_SIGNAL;
      r->stop_nr = sig;
      snprintf(r->message, sizeof r->message, "the syscall-buffering hook faulted (%s at "
               "0x%llx) in process %d, reading the iovec array of readv or writev: record "
               "with --no-syscallbuf", strsignal(sig), (unsigned long long)regs.rip, r->pid);
      return RRV_STOP_UNSUPPORTED;
    }
  }
  int flags = fault ? 0 : RRV_EF_AT_SYSCALL_EXIT;
  if (!fault && r->delivering_held) {
    if (sig != r->held[0].sig)    /* another one came first: as any that comes in user code */
      return on_async_signal(r, sig, &si, &regs, fpu);
    /* The held signal, raised at a syscall's entry (deliver_held_signal): with its own
     * siginfo, as it was sent. */
    r->delivering_held = 0;
    memcpy(&si, r->held[0].info, sizeof si);
    if (ptrace(PTRACE_SETSIGINFO, r->pid, 0, &si) < 0) return fail(r, "PTRACE_SETSIGINFO");
    memmove(&r->held[0], &r->held[1], (r->nheld - 1) * sizeof r->held[0]);
    r->nheld--;
    r->held_since_ns = rrv_now_ns();
    flags = RRV_EF_AT_SYSCALL_ENTRY;
  } else if (!fault && !after_syscall) {
    return on_async_signal(r, sig, &si, &regs, fpu);
  }
  int flushed = syscallbuf_flush(r);
  if (flushed) return flushed;
  size_t ev = event_begin(r, RRV_EVENT_SIGNAL, sig, &regs);
  if (ev == (size_t)-1) return fail(r, "out of memory");
  r->signal_delivered = 1;
  event_at(r, ev)->flags = flags;
  event_at(r, ev)->fpu_digest = fpu;
  /* Delivered by single-step: the next stop shows whether the kernel wrote a signal frame,
   * which then becomes this event's writes (finish_recorded_delivery). */
  memcpy(r->delivered_siginfo, &si, sizeof si);
  r->delivering = 1;
  r->resume_sig = sig;
  r->resume_op = PTRACE_SINGLESTEP;
  return 0;
}

/* The first stop after a signal delivered by single-step: the signal frame the kernel wrote,
 * if it wrote one, is recorded as the SIGNAL event's writes, and the event is sealed. Returns
 * 1 if the stop was only the single-step trap (nothing else to do), 0 if it is to be handled
 * as usual, or an RRV_STOP_*. */
static int finish_recorded_delivery(struct rrv_recorder *r, int status) {
  size_t ev = r->open_event;
  const struct rrv_event *sig_ev = event_at(r, ev);
  int sig = sig_ev->nr;
  r->delivering = 0;
  struct rrv_regs regs;
  uint64_t frame[2][2];
  int n = WIFSTOPPED(status) && rrv_getregs(r->pid, &regs) == 0 ?
              rrv_signal_frame(r->pid, &regs, sig, frame) : 0;
  for (int i = 0; i < n; i++)
    if (capture(r, ev, frame[i][0], frame[i][1])) return fail(r, "recording a signal frame");
  if (n) {   /* the handler runs under its own mask; SA_RESETHAND reset SIGSEGV's handler */
    if (rrv_get_sigmask(r->pid, &r->known_mask) < 0) return fail(r, "PTRACE_GETSIGMASK");
    if (sig == SIGSEGV && (r->segv_action[1] & SA_RESETHAND)) r->segv_action[0] = 0;
  }
  if (event_add_extra(r, ev, r->delivered_siginfo, sizeof r->delivered_siginfo))
    return fail(r, "out of memory");
  event_end(r, ev);
  siginfo_t si;
  return WIFSTOPPED(status) && ptrace(PTRACE_GETSIGINFO, r->pid, 0, &si) == 0 &&
         RRV_DELIVERY_STEP(status, &si);
}

/* After RRV_STOP_CHECKPOINT_AT_EXIT: skip the exit, to be issued again once the checkpoint is
 * taken. Every signal stays blocked until then (a pending one would otherwise be delivered
 * before the exit, as it never was); parked_mask keeps the program's own mask for the
 * checkpoint. Returns 0, -1, or -2 if the tracee died (status). */
int rrv_record_park_for_exit(struct rrv_recorder *r) {
  int status = 0;
  if (rrv_get_sigmask(r->pid, &r->parked_mask) < 0 || rrv_set_sigmask(r->pid, ~0ull) < 0)
    return -1;
  int rc = rrv_park_before_syscall(r->pid, &status);
  if (rc == -2) r->status = status;
  if (rc == 0) {
    r->exit_pending = 0;
    r->parked = 1;
  }
  return rc;
}

/* r was found dead while the driver worked on it (a checkpoint): its exit is recorded. */
int rrv_record_died(struct rrv_recorder *r, int status) { return record_exit(r, status); }

/* The buffered syscall the thread is in (at its entry, or completed) is moved out of the
 * preload: *regs become its caller's, at the entry of its stub's own traced `syscall`
 * (syscallbuf.c: rrv_syscallbuf_unwind), recorded as an UNWIND event. Not set in the tracee. */
static int record_unwind(struct rrv_recorder *r, struct rrv_regs *regs) {
  char why[160];
  if (rrv_syscallbuf_unwind(r->pid, r->syscallbuf, regs, why, sizeof why) < 0) {
    snprintf(r->message, sizeof r->message, "cannot move a buffered syscall out of the "
             "preload: %s", why);
    return RRV_STOP_ERROR;
  }
  size_t ev = event_begin(r, RRV_EVENT_UNWIND, (int)regs->orig_rax, regs);
  if (ev == (size_t)-1) return fail(r, "out of memory");
  event_at(r, ev)->aux = r->syscallbuf;
  event_end(r, ev);
  return 0;
}

/* A signal came as a buffered syscall returned: it completed (SIGPIPE from a write, or any
 * signal that arrived just then), or the signal interrupted it where it blocked (rax a
 * restart code). Delivered there, at the syscall's exit, as it would be without the
 * recorder, but not inside the preload: the syscall is unwound to its stub and recorded as a
 * traced syscall that returned this result (its outputs are in the caller's memory: the hook
 * does not move them), and the signal comes at that syscall's exit, where the kernel restarts
 * an interrupted one through the stub's own `syscall` (SA_RESTART) or makes it fail with
 * EINTR, as for any traced syscall. Returns 0 or an RRV_STOP_*. */
static int complete_buffered_as_traced(struct rrv_recorder *r, struct rrv_regs *regs) {
  int64_t result = (int64_t)regs->rax;
  uint64_t fpu = 0;
  int rc = syscallbuf_flush(r);
  if (rc) return rc;
  rrv_fpu_digest(r->pid, &fpu);
  struct rrv_regs entry = *regs;
  if ((rc = record_unwind(r, &entry))) return rc;
  int64_t nr = (int64_t)entry.orig_rax;
  if (nr < 0 || nr >= RRV_NSYSCALLS || !rrv_syscalls[nr].handling) {
    snprintf(r->message, sizeof r->message, "a buffered syscall %lld the table does not know",
             (long long)nr);
    return RRV_STOP_ERROR;
  }
  struct rrv_regs exit = entry;
  exit.rax = (uint64_t)result;
  if (rrv_setregs(r->pid, &exit) < 0) return fail(r, "PTRACE_SETREGS");
  r->sc_nr = nr;
  r->sc_regs = entry;
  r->sc_fpu = fpu;
  r->sc_sets_segv = 0;
  r->in_syscall = 1;
  rc = on_syscall_exit(r);
  if (rc == RRV_STOP_CHECKPOINT) rc = 0;   /* not with a signal pending: at a later exit */
  if (rc) return rc;
  *regs = exit;
  return 0;
}

/* A syscall-entry stop of a process resumed with PTRACE_SYSCALL while it had signals held.
 * A buffered syscall (at the untraced instruction): the thread is in the preload, where no
 * signal may find it (rr issue #3285), so the syscall is unwound to its stub's own traced
 * `syscall`, and the held signal is delivered there, at that syscall's entry, as at any
 * other. A traced syscall: its seccomp stop comes next, and delivers it. */
static int on_watched_entry(struct rrv_recorder *r) {
  struct rrv_regs regs;
  r->watching_entries = 0;
  r->resume_op = PTRACE_CONT;
  if (rrv_getregs(r->pid, &regs) < 0) return fail(r, "PTRACE_GETREGS");
  if (regs.rip != RRV_UNTRACED_SYSCALL + 2 || !r->syscallbuf || !r->nheld) return 0;
  int flushed = syscallbuf_flush(r);
  if (flushed) return flushed;
  if (r->test_no_unwind) return deliver_held_signal(r, &regs);
  int rc = record_unwind(r, &regs);
  return rc ? rc : deliver_held_signal(r, &regs);
}

/* One stop of process r, at the session loop. Returns 0 or an RRV_STOP_*. */
static int on_stop(struct rrv_recorder *r, int status) {
  int rc;
  if (r->delivering && (rc = finish_recorded_delivery(r, status)))
    return rc == 1 ? 0 : rc;     /* 1: the single-step trap: resume */
  if (WIFEXITED(status) || WIFSIGNALED(status)) return record_exit(r, status);
  if (r->in_syscall) {   /* running a syscall: its exit stop, or events on the way there */
    int event = status >> 16;
    r->resume_op = PTRACE_SYSCALL;
    if (RRV_SYSCALL_EXIT_STOP(status)) {
      r->resume_op = PTRACE_CONT;
      if (r->shared_member && !take_token(r, 1)) return 0;   /* on_syscall_exit when granted */
      return on_syscall_exit(r);
    }
    if (RRV_EXEC_STOP(status)) {   /* a new address space: it shares nothing any more */
      rrv_forget_mem();
      if (r->session->serialize) {  /* still one at a time; nothing of the old memory to diff */
        mem_snapshot_free(r->shared_snapshot);
        r->shared_snapshot = NULL;
      } else {
        leave_sharing(r);
      }
      return 0;
    }
    if (event == PTRACE_EVENT_FORK || event == PTRACE_EVENT_VFORK ||
        event == PTRACE_EVENT_CLONE) {
      unsigned long child = 0;
      if (ptrace(PTRACE_GETEVENTMSG, r->pid, 0, &child) < 0) return fail(r, "PTRACE_GETEVENTMSG");
      r->session->new_pid = (int)child;
      r->session->new_flags = r->sc_clone_flags;
      return RRV_STOP_NEW_PROCESS;
    }
    snprintf(r->message, sizeof r->message, "unexpected stop (status 0x%x) inside syscall %lld",
             status, (long long)r->sc_nr);
    return RRV_STOP_ERROR;
  }
  if (RRV_GROUP_STOP(status)) {
    /* The stop signal's delivery was recorded; the stop itself is left in place, as
     * without a tracer, until SIGCONT ends it (then reported with SIGTRAP: resume). */
    int stop = WSTOPSIG(status);
    if (stop == SIGSTOP || stop == SIGTSTP || stop == SIGTTIN || stop == SIGTTOU) {
      if (ptrace(PTRACE_LISTEN, r->pid, 0, 0) < 0) return fail(r, "PTRACE_LISTEN");
      r->listening = 1;
    }
    return 0;
  }
  if (RRV_SECCOMP_STOP(status)) {
    r->watching_entries = 0;
    return on_syscall(r);
  }
  if (r->watching_entries && RRV_SYSCALL_EXIT_STOP(status)) return on_watched_entry(r);
  if (WSTOPSIG(status) == SIGTRAP && (status >> 16)) {
    snprintf(r->message, sizeof r->message, "unexpected ptrace event %d", status >> 16);
    return RRV_STOP_ERROR;
  }
  if (RRV_SYSCALL_EXIT_STOP(status)) {
    snprintf(r->message, sizeof r->message, "unexpected syscall-exit stop");
    return RRV_STOP_ERROR;
  }
  return on_signal(r, WSTOPSIG(status));
}

/* The signal that wakes a session's tracer thread from its wait: its timer's, when a held
 * signal or the token has waited too long, and another tracer thread's, when it hands the
 * session a process. */
#define RRV_WAKE_SIGNAL (SIGRTMAX - 1)

static void wake_handler(int sig) { (void)sig; }   /* no SA_RESTART: waitpid returns EINTR */

static void install_wake_handler(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = wake_handler;
  sigaction(RRV_WAKE_SIGNAL, &sa, NULL);
}

static int session_timer(struct rrv_session *s, void **timer) {
  struct sigevent sev;
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = RRV_WAKE_SIGNAL;
  sev._sigev_un._tid = s->tid;
  timer_t *t = calloc(1, sizeof(timer_t));
  if (!t || timer_create(CLOCK_MONOTONIC, &sev, t) < 0) {
    free(t);
    return -1;
  }
  *timer = t;
  return 0;
}

/* The session's thread is kicked by its kick timer, which another thread arms when it hands
 * it a process or closes it: at once and then every millisecond until the thread has seen
 * why (a single signal could come just before its waitpid, and be lost). */
static void kick(struct rrv_session *s) {
  if (!atomic_load((_Atomic int *)&s->kick_ready)) return;   /* it looks before it waits */
  struct itimerspec its = {{0, 1000000}, {0, 1}};
  timer_settime(*(timer_t *)s->kick_timer, 0, &its, NULL);
}

static void kicked(struct rrv_session *s) {
  struct itimerspec its;
  memset(&its, 0, sizeof its);
  if (s->kick_ready) timer_settime(*(timer_t *)s->kick_timer, 0, &its, NULL);
}

/* A process was handed to s, or its thread is to end. */
static int session_woken(struct rrv_session *s) {
  return atomic_load((_Atomic(struct rrv_recorder *) *)&s->inbox) != NULL ||
         atomic_load((_Atomic int *)&s->stopping) ||
         (atomic_load((_Atomic int *)&s->closed) && !s->live);
}

/* waitpid for the next stop of one of this thread's tracees (not another tracer thread's:
 * __WNOTHREAD), or, with none, a pause. Returns the pid, or 0 once `deadline_ns` (if not 0)
 * has passed or the session has a process handed to it or was closed. */
static int wait_any(struct rrv_session *s, int *status, uint64_t deadline_ns) {
  if (!s->kick_ready) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install_wake_handler);
    s->tid = (int)syscall(SYS_gettid);
    if (session_timer(s, &s->kick_timer) < 0) return -1;
    atomic_store((_Atomic int *)&s->kick_ready, 1);
  }
  if (deadline_ns && !s->timer_ready) {
    if (session_timer(s, &s->timer) < 0) return -1;
    s->timer_ready = 1;
  }
  if (s->timer_ready) {
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    if (deadline_ns) {
      uint64_t now = rrv_now_ns(), left = deadline_ns > now ? deadline_ns - now : 1;
      its.it_value.tv_sec = left / 1000000000ull;
      its.it_value.tv_nsec = left % 1000000000ull;
      its.it_interval.tv_nsec = 50000000;   /* again, in case the first one came early */
    }
    timer_settime(*(timer_t *)s->timer, 0, &its, NULL);
  }
  for (;;) {
    if (session_woken(s) || (deadline_ns && rrv_now_ns() >= deadline_ns)) return 0;
    int pid = s->live ? waitpid(-1, status, __WALL | __WNOTHREAD) : pause();
    if (pid > 0) return pid;
    if (errno != EINTR) return -1;
    kicked(s);   /* (a kick armed after the inbox was emptied would go on; the look follows) */
  }
}

/* Another tracer thread, at a stop of r (a process of `from` that shares no memory with one
 * left behind), gives r to `to`: ptrace ties a tracee to one thread, and r must move
 * without a signal, a stop or a notification it or its parent could see. Its syscall page's
 * untraced `syscall` (which the recording filter lets futex through) parks it in a futex
 * wait on a word that never changes, its signals blocked; it is detached, moved to `to`'s
 * CPU, and put in `to`'s inbox; `to`'s thread seizes it and gives it back its registers and
 * mask (adopt_handed_over). Returns 0, or -1 (errno; ESRCH: it was killed). */
#define RRV_PARK_WORD (RRV_SYSCALL_PAGE + 0x20)   /* int3s */
#define RRV_PARK_VALUE 0xccccccccull
#define RRV_PARK_STACK (RRV_SYSCALL_PAGE + 0x800)

int rrv_session_hand_over(struct rrv_session *from, struct rrv_recorder *r,
                          struct rrv_session *to) {
  if (rrv_getregs(r->pid, &r->handover_regs) < 0 ||
      rrv_get_sigmask(r->pid, &r->handover_mask) < 0 || rrv_set_sigmask(r->pid, ~0ull) < 0)
    return -1;
  struct rrv_regs park = r->handover_regs;
  park.rip = RRV_UNTRACED_SYSCALL;
  park.rax = SYS_futex;
  park.orig_rax = (uint64_t)-1;      /* nothing to restart where it stands */
  park.rdi = RRV_PARK_WORD;
  park.rsi = FUTEX_WAIT_PRIVATE;
  park.rdx = RRV_PARK_VALUE;
  park.r10 = 0;
  /* Should the wait ever return, the `ret` after the syscall pops int3s, a non-canonical
   * address: the process dies of SIGSEGV rather than run its code untraced. */
  park.rsp = RRV_PARK_STACK;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(to->cpu >= 0 ? to->cpu : 0, &set);
  if ((to->cpu >= 0 && sched_setaffinity(r->pid, sizeof set, &set) < 0) ||
      rrv_setregs(r->pid, &park) < 0) {
    int err = errno;      /* it stays where it is, as it was */
    rrv_setregs(r->pid, &r->handover_regs);
    rrv_set_sigmask(r->pid, r->handover_mask);
    errno = err;
    return -1;
  }
  if (ptrace(PTRACE_DETACH, r->pid, 0, 0) < 0) return -1;   /* ESRCH: killed meanwhile */
  rrv_forget_mem();    /* (this thread's /proc/PID/mem of it: the pid may come back as another) */
  session_forget(from, r->index);
  r->session = NULL;
  r->need_resume = 0;
  _Atomic(struct rrv_recorder *) *inbox = (_Atomic(struct rrv_recorder *) *)&to->inbox;
  r->inbox_next = atomic_load(inbox);
  while (!atomic_compare_exchange_weak(inbox, &r->inbox_next, r)) {}
  kick(to);
  return 0;
}

/* No process will be handed to s any more: its thread ends once it has none left (at once
 * if stopping). */
void rrv_session_close(struct rrv_session *s, int stopping) {
  if (stopping) atomic_store((_Atomic int *)&s->stopping, 1);
  atomic_store((_Atomic int *)&s->closed, 1);
  kick(s);
}

/* Is pid a zombie, or gone? */
static int process_dead(int pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  buf[n > 0 ? n : 0] = 0;
  const char *paren = strrchr(buf, ')');
  return !paren || paren[1] != ' ' || paren[2] == 'Z' || paren[2] == 'X';
}

/* One process of the inbox becomes this session's: seized by this thread, stopped where it
 * was parked, given back its registers and signal mask. Returns ADOPTED (s->current), or 0 if
 * the inbox is empty, or what its death or a failure makes of it. */
static int adopt_handed_over(struct rrv_session *s) {
  kicked(s);      /* (before the inbox is read: a process handed over after it kicks again) */
  _Atomic(struct rrv_recorder *) *inbox = (_Atomic(struct rrv_recorder *) *)&s->inbox;
  struct rrv_recorder *r = atomic_load(inbox);
  while (r && !atomic_compare_exchange_weak(inbox, &r, r->inbox_next)) {}
  if (!r) return 0;     /* (only this thread takes from it: no ABA) */
  r->inbox_next = NULL;
  if (rrv_session_add(s, r) < 0) {
    snprintf(s->message, sizeof s->message, "out of memory");
    return RRV_STOP_ERROR;
  }
  s->current = r->index;
  int status;
  if (ptrace(PTRACE_SEIZE, r->pid, 0, RRV_PTRACE_OPTIONS) < 0) {
    /* Killed while parked (nothing but SIGKILL ends it there): a zombie its parent has not
     * reaped yet (EPERM), or gone (ESRCH). */
    if (errno == ESRCH || (errno == EPERM && process_dead(r->pid)))
      return record_exit(r, SIGKILL);
    return fail(r, "seizing it from the other tracer thread");
  }
  if (ptrace(PTRACE_INTERRUPT, r->pid, 0, 0) < 0 || rrv_wait(r->pid, &status) < 0)
    return fail(r, "stopping it after its hand-over");
  if (!WIFSTOPPED(status)) return record_exit(r, status);
  if ((status >> 16) != PTRACE_EVENT_STOP || WSTOPSIG(status) != SIGTRAP) {
    /* SIGSTOP cannot be blocked: it stopped, untraced, while it was moved */
    r->stop_what = RRV_UNSUP_SIGNAL;
    r->stop_nr = WSTOPSIG(status);
    snprintf(r->message, sizeof r->message, "process %d was stopped (signal %d, %s) while it "
             "moved from one tracer thread to another, where its parent could see it: record "
             "with --tracee-cpus tracer", r->pid, WSTOPSIG(status),
             strsignal(WSTOPSIG(status)));
    return RRV_STOP_UNSUPPORTED;
  }
  if (rrv_setregs(r->pid, &r->handover_regs) < 0 ||
      rrv_set_sigmask(r->pid, r->handover_mask) < 0)
    return fail(r, "giving it back its registers after its hand-over");
  return RRV_STOP_ADOPTED;
}

static int find_process(const struct rrv_session *s, int pid) {
  for (int k = 0; k < s->live; k++)
    if (s->procs[s->alive[k]]->pid == pid) return s->alive[k];
  return -1;
}

int rrv_session_add(struct rrv_session *s, struct rrv_recorder *r) {
  if (s->nprocs == s->cap) {
    int cap = s->cap ? s->cap * 2 : 16;
    struct rrv_recorder **procs = realloc(s->procs, cap * sizeof *procs);
    if (!procs) return -1;
    s->procs = procs;
    int *alive = realloc(s->alive, cap * sizeof *alive);
    if (!alive) return -1;
    s->alive = alive;
    s->cap = cap;
  }
  if (recording_add(s->recording, r->pid) < 0) return -1;
  if (!s->nprocs) s->token_holder = -1;
  r->index = s->nprocs;
  r->session = s;
  r->need_resume = 1;
  if (s->serialize) r->shared_member = 1;
  s->procs[s->nprocs++] = r;
  s->alive[s->live++] = r->index;
  if (!s->held_timeout_ns) s->held_timeout_ns = 2000000000ull;
  return 0;
}

/* Make the child announced by NEW_PROCESS (pid) a recorded process: it is stopped at its first
 * stop, which the session may already have seen; what the kernel copied from its parent, the
 * recorder copies too. Returns 0, -1, or -2 if it died before its first stop (child->status). */
int rrv_session_adopt(struct rrv_session *s, struct rrv_recorder *child, int pid,
                      const struct rrv_recorder *parent) {
  int status = -1;
  for (int i = 0; i < s->nearly; i++)
    if (s->early[i][0] == pid) {
      status = s->early[i][1];
      memmove(&s->early[i], &s->early[i + 1], (s->nearly - i - 1) * sizeof s->early[0]);
      s->nearly--;
      break;
    }
  if (status == -1 && rrv_wait(pid, &status) < 0) return -1;
  if (rrv_record_init(child, pid) < 0) return -1;
  child->status = status;
  if (!WIFSTOPPED(status)) {   /* killed before it ever ran: a process of the trace all the same */
    child->handle = parent->handle;
    if (rrv_session_add(s, child)) return -1;
    child->gone = 1;
    child->need_resume = 0;
    session_forget(s, child->index);
    recording_remove(s->recording, pid);
    return -2;
  }
  child->program_tsc_mode = parent->program_tsc_mode;
  child->program_no_new_privs = parent->program_no_new_privs;
  child->program_filters = program_filters_copy(parent->program_filters);
  if (parent->program_filters &&
      (!child->program_filters ||
       ((struct program_filters *)child->program_filters)->count !=
           ((const struct program_filters *)parent->program_filters)->count)) {
    errno = ENOMEM;
    return -1;
  }
  memcpy(child->segv_action, parent->segv_action, sizeof child->segv_action);
  child->known_mask = parent->known_mask;
  child->actions_set = parent->actions_set;
  child->own_affinity = parent->own_affinity;
  child->altstack_set = parent->altstack_set;
  child->signal_delivered = parent->signal_delivered;   /* its stack is a copy of the parent's */
  child->shared_file_mapped = parent->shared_file_mapped;
  child->last_trap = parent->last_trap;
  child->checkpoint_every = parent->checkpoint_every;
  child->checkpoint_interval_ns = parent->checkpoint_interval_ns;
  child->flush_at = parent->flush_at;
  child->blob_threshold = parent->blob_threshold;
  child->handle = parent->handle;
  child->syscallbuf_allowed = parent->syscallbuf_allowed;
  child->syscallbuf = parent->syscallbuf;
  child->stubs = parent->stubs;
  child->stubs_size = parent->stubs_size;
  child->stubs_used = parent->stubs_used;
  child->hook_entry = parent->hook_entry;
  child->nkept = parent->nkept;
  memcpy(child->kept_sites, parent->kept_sites, sizeof child->kept_sites);
  /* A vfork child's stubs and code are its parent's: it patches nothing (patchable_stop) */
  child->in_parent_memory = (s->new_flags & RRV_CLONE_VM) != 0;
  if (rrv_session_add(s, child)) return -1;
  if (parent->shared_member) {    /* it shares its parent's shared mappings (vfork: all) */
    child->shared_member = 1;
    take_token(child, 2);     /* if it waits, its birth checkpoint waits too (STOP_CHECKPOINT) */
  }
  return 0;
}

/* The sealed events of r's buffer (an event still open, a signal being delivered, stays). */
size_t rrv_record_sealed(const struct rrv_recorder *r) {
  return r->open_event == (size_t)-1 ? r->len : r->open_event;
}

void rrv_record_consumed(struct rrv_recorder *r, size_t n, uint64_t count) {
  memmove(r->buf, r->buf + n, r->len - n);
  r->len -= n;
  if (r->open_event != (size_t)-1) r->open_event -= n;
  r->buffered_events -= count;
}

void rrv_session_free(struct rrv_session *s) {
  if (s->timer_ready) timer_delete(*(timer_t *)s->timer);
  if (s->kick_ready) timer_delete(*(timer_t *)s->kick_timer);
  free(s->timer);
  free(s->kick_timer);
  s->kick_timer = NULL;
  s->kick_ready = 0;
  free(s->procs);
  free(s->alive);
  s->procs = NULL;
  s->alive = NULL;
  s->timer = NULL;
  s->timer_ready = 0;
}

/* The record loop of a whole process tree: every process runs at once, and each stop of any
 * is handled as it comes. Returns to Python (session->current: whose stop) to flush events,
 * at an exec, a new process, an exit, and for what the recording cannot handle. */
/* The token is free: the member that has waited longest gets it. Returns 0 or an RRV_STOP_*. */
static int grant_token(struct rrv_session *s) {
  struct rrv_recorder *next = NULL;
  for (int k = 0; k < s->live; k++) {
    struct rrv_recorder *r = s->procs[s->alive[k]];
    if (r->awaiting_token &&
        (!next || r->token_wait_since_ns < next->token_wait_since_ns))
      next = r;
  }
  if (!next) return 0;
  int why = next->awaiting_token;
  next->awaiting_token = 0;
  s->token_holder = next->index;
  s->current = next->index;
  next->need_resume = 1;
  return why == 2 ? RRV_STOP_CHECKPOINT : on_syscall_exit(next);
}

int rrv_session_run(struct rrv_session *s) {
  for (uint64_t n = 0;; n++) {
    uint64_t deadline = 0;
    if (s->token_holder < 0) {
      int rc = grant_token(s);
      if (rc) return rc;
    }
    /* Backwards: a process that ends here leaves alive[], and the last entry (one already
     * seen) takes its place. */
    for (int k = s->live - 1; k >= 0; k--) {
      int i = s->alive[k];
      struct rrv_recorder *r = s->procs[i];
      if (r->nheld && (!deadline || r->held_since_ns + s->held_timeout_ns < deadline))
        deadline = r->held_since_ns + s->held_timeout_ns;
      if (r->awaiting_token &&
          (!deadline || r->token_wait_since_ns + s->held_timeout_ns < deadline))
        deadline = r->token_wait_since_ns + s->held_timeout_ns;
      if (!r->need_resume) continue;
      s->current = i;
      if (r->len >= r->flush_at && !r->delivering) return RRV_STOP_FLUSH;
      if (r->redo_stop) {      /* a kept site: its syscall goes on through ptrace */
        r->redo_stop = 0;
        int rc = on_syscall(r);
        if (rc) return rc;
        if (r->gone || !r->need_resume) continue;
      }
      if (r->exit_pending) {   /* no checkpoint was taken: record the exit where it stands */
        r->exit_pending = 0;
        int rc = on_syscall(r);
        if (rc) return rc;
        if (r->gone || !r->need_resume) continue;
      }
      r->need_resume = 0;
      int sig = r->resume_sig;
      r->resume_sig = 0;
      /* Holding a signal: stop at the next syscall entry, buffered ones included */
      if (r->nheld && r->syscallbuf && !r->in_syscall && r->resume_op == PTRACE_CONT &&
          !r->delivering && !r->delivering_held && !r->listening) {
        r->resume_op = PTRACE_SYSCALL;
        r->watching_entries = 1;
      }
      if (r->listening)       /* stopped by job control: it goes on when SIGCONT comes */
        r->listening = 0;
      else if (ptrace(r->resume_op, r->pid, 0, sig) < 0)
        return fail(r, "resuming the tracee");
      if (!r->in_syscall) r->resume_op = PTRACE_CONT;
    }
    if ((n & 63) == 63) {
      uint64_t now = rrv_now_ns();
      for (int k = 0; k < s->live; k++) {
        int i = s->alive[k];
        struct rrv_recorder *r = s->procs[i];
        if (r->buffered_events && !r->delivering && now - r->last_flush_ns > 200000000ull) {
          r->last_flush_ns = now;
          s->current = i;
          return RRV_STOP_FLUSH;
        }
      }
    }
    int status;
    int pid = wait_any(s, &status, deadline);
    if (pid < 0) {
      snprintf(s->message, sizeof s->message, "waitpid: %s", strerror(errno));
      return RRV_STOP_ERROR;
    }
    if (pid == 0 && s->inbox) {
      int rc = adopt_handed_over(s);
      if (rc) return rc;
      continue;
    }
    if (pid == 0 && (s->stopping || (s->closed && !s->live))) {
      kicked(s);
      return RRV_STOP_DONE;
    }
    if (pid == 0) {   /* a held signal or the token waited too long: no syscall comes */
      for (int k = 0; k < s->live; k++) {
        int i = s->alive[k];
        struct rrv_recorder *r = s->procs[i];
        if (!r->awaiting_token ||
            rrv_now_ns() < r->token_wait_since_ns + s->held_timeout_ns || s->token_holder < 0)
          continue;
        struct rrv_recorder *holder = s->procs[s->token_holder];
        uint64_t lo = 0, hi = 0;
        shared_writable_mapping(r->pid, &lo, &hi);
        s->current = i;
        r->stop_what = RRV_UNSUP_SHARED_MEMORY;
        snprintf(r->message, sizeof r->message, "processes %d and %d share writable memory "
                 "(a MAP_SHARED mapping at 0x%llx-0x%llx), and %d ran for %.1f s without a ptrace "
                 "stop while %d waited to run: switching between them there needs "
                 "preemption at execution points (not supported yet)", holder->pid, r->pid,
                 (unsigned long long)lo, (unsigned long long)hi, holder->pid,
                 s->held_timeout_ns / 1e9, r->pid);
        return RRV_STOP_UNSUPPORTED;
      }
      for (int k = 0; k < s->live; k++) {
        int i = s->alive[k];
        struct rrv_recorder *r = s->procs[i];
        if (!r->nheld || rrv_now_ns() < r->held_since_ns + s->held_timeout_ns)
          continue;
        s->current = i;
        r->stop_what = RRV_UNSUP_HELD_SIGNAL;
        r->stop_nr = r->held[0].sig;
        snprintf(r->message, sizeof r->message, "process %d got signal %d (%s), which it "
                 "handles, while running user code, and made no syscall in the %.1f s since: "
                 "delivering it at an exact point needs execution points (not supported yet)",
                 r->pid, r->held[0].sig, strsignal(r->held[0].sig),
                 s->held_timeout_ns / 1e9);
        return RRV_STOP_UNSUPPORTED;
      }
      continue;
    }
    int i = find_process(s, pid);
    if (i < 0) {   /* a child's first stop, before its parent's fork event was handled */
      if (s->nearly == (int)(sizeof s->early / sizeof s->early[0])) {
        snprintf(s->message, sizeof s->message, "too many unannounced children (pid %d)", pid);
        return RRV_STOP_ERROR;
      }
      s->early[s->nearly][0] = pid;
      s->early[s->nearly++][1] = status;
      continue;
    }
    s->current = i;
    struct rrv_recorder *r = s->procs[i];
    r->need_resume = 1;
    int rc = on_stop(r, status);
    if (r->gone) r->need_resume = 0;
    if (!rc && r->shared_member && r->in_syscall && !r->awaiting_token)
      rc = release_token(r);   /* into the kernel: another member may run meanwhile */
    if (rc) return rc;
  }
}
