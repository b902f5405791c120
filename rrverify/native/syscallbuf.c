/* syscallbuf.c: what recording and replay both do to a thread that buffers syscalls
 * (preload/syscallbuf.c): read its buffer's records, unwind a buffered syscall that did not
 * complete, skip a syscall at its entry stop, and read the debug registers (replay checks that
 * none is armed: its syscall breakpoint is an int3, replayer.c). */
#include <stddef.h>
#include <sys/user.h>

/* Is [p, p+len) a well-formed buffered-syscall record (its writes inside it, of known kinds,
 * its size a multiple of 8 that covers them)? `sent_ok`: RRV_WRITE_SENT pieces allowed (in a
 * tracee's buffer; a trace has their digest instead). Returns the record's size, or 0. */
static size_t buffered_record_size(const uint8_t *p, size_t len, int sent_ok, char *why,
                                   size_t whylen) {
  const struct rrv_buffered_syscall *rec = (const struct rrv_buffered_syscall *)p;
  if (len < sizeof *rec) {
    snprintf(why, whylen, "truncated (%zu bytes left, a record takes %zu)", len, sizeof *rec);
    return 0;
  }
  if (rec->size < sizeof *rec || rec->size % 8 || rec->size > len) {
    snprintf(why, whylen, "its size %u is not a multiple of 8 within the %zu bytes left",
             rec->size, len);
    return 0;
  }
  size_t at = sizeof *rec;
  for (unsigned i = 0; i < rec->nwrites; i++) {
    if (at + sizeof(struct rrv_write) > rec->size) {
      snprintf(why, whylen, "its write %u overruns it", i);
      return 0;
    }
    const struct rrv_write *w = (const struct rrv_write *)(p + at);
    if (w->how != RRV_WRITE_INLINE && !(sent_ok && w->how == RRV_WRITE_SENT)) {
      snprintf(why, whylen, "its write %u is of unknown kind %u", i, w->how);
      return 0;
    }
    at += sizeof *w + RRV_ALIGN8((size_t)w->len);
    if (at > rec->size) {
      snprintf(why, whylen, "its write %u (%u bytes) overruns it", i, w->len);
      return 0;
    }
  }
  if (rec->flags & RRV_BF_PIPE) at += sizeof(struct rrv_pipe_io);
  if (rec->flags & ~(RRV_BF_SENT | RRV_BF_PIPE)) {
    snprintf(why, whylen, "unknown flags 0x%x", rec->flags);
    return 0;
  }
  if (at != rec->size) {
    snprintf(why, whylen, "its size %u does not match its contents (%zu)", rec->size, at);
    return 0;
  }
  return rec->size;
}

/* A thread stopped inside a buffered syscall (the hook running: at the untraced syscall's
 * entry, or in it) is moved out of the preload: its registers become the caller's, as they
 * were at the site, at the entry of its stub's own traced `syscall` (rip after it, orig_rax
 * the number, as at a syscall-entry stop), and the hook's state is dropped (in_hook cleared;
 * its record was never committed). *regs gets those registers; they are not set. Returns 0,
 * or -1 with `why` set. */
int rrv_syscallbuf_unwind(int pid, uint64_t hdr_addr, struct rrv_regs *regs, char *why,
                          size_t whylen) {
  struct rrv_syscallbuf_hdr h;
  struct rrv_hook_frame f;
  if (rrv_read_mem(pid, hdr_addr, &h, sizeof h) != sizeof h) {
    snprintf(why, whylen, "its syscall buffer at 0x%llx is unreadable",
             (unsigned long long)hdr_addr);
    return -1;
  }
  if (!h.in_hook) {
    snprintf(why, whylen, "its syscall buffer says no buffered syscall is under way");
    return -1;
  }
  if (rrv_read_mem(pid, h.frame, &f, sizeof f) != sizeof f) {
    snprintf(why, whylen, "the hook's frame at 0x%llx is unreadable", (unsigned long long)h.frame);
    return -1;
  }
  regs->r15 = f.r15, regs->r14 = f.r14, regs->r13 = f.r13, regs->r12 = f.r12;
  regs->r11 = f.r11, regs->r10 = f.r10, regs->r9 = f.r9, regs->r8 = f.r8, regs->rbp = f.rbp;
  regs->rdi = f.rdi, regs->rsi = f.rsi, regs->rdx = f.rdx, regs->rcx = f.rcx, regs->rbx = f.rbx;
  regs->eflags = f.rflags;
  regs->orig_rax = f.rax;
  regs->rax = (uint64_t)-ENOSYS;
  regs->rsp = h.frame + sizeof f + 128;           /* past the red zone the stub stepped over */
  regs->rip = f.ret - RRV_STUB_CALL_RETURN + RRV_STUB_SYSCALL + 2;
  uint32_t zero = 0;
  if (rrv_write_mem(pid, hdr_addr + offsetof(struct rrv_syscallbuf_hdr, in_hook), &zero,
                    sizeof zero) != sizeof zero) {
    snprintf(why, whylen, "cannot write its syscall buffer");
    return -1;
  }
  return 0;
}

/* At a syscall-entry stop: the syscall is not run, and the tracee is left at its exit stop
 * with registers `after`. Returns 0, -1 (errno), or -2 if it died (*status). */
int rrv_skip_syscall(int pid, const struct rrv_regs *after, int *status) {
  struct rrv_regs skip;
  if (rrv_getregs(pid, &skip) < 0) return -1;
  skip.orig_rax = (uint64_t)-1;
  if (rrv_setregs(pid, &skip) < 0) return -1;
  if (rrv_step_to_syscall_exit(pid, status) < 0) return -1;
  if (!WIFSTOPPED(*status)) return -2;
  return rrv_setregs(pid, after);
}

/* DR7 (0: no breakpoint armed) and DR6, or -1. */
int rrv_debug_state(int pid, uint64_t *dr7, uint64_t *dr6) {
  errno = 0;
  long v7 = ptrace(PTRACE_PEEKUSER, pid, offsetof(struct user, u_debugreg[7]), 0);
  if (errno) return -1;
  long v6 = ptrace(PTRACE_PEEKUSER, pid, offsetof(struct user, u_debugreg[6]), 0);
  if (errno) return -1;
  *dr7 = (uint64_t)v7;
  *dr6 = (uint64_t)v6;
  return 0;
}

/* The digest of bytes a write-family syscall sent, continued from h, as rrv_digest_range
 * computes it from the tracee (in 64 KiB pieces). */
static uint64_t sent_digest_update(uint64_t h, const uint8_t *data, size_t len) {
  while (len) {
    size_t n = len < (1 << 16) ? len : (1 << 16);
    h = digest_update(h, data, n);
    data += n;
    len -= n;
  }
  return h;
}

/* A syscall's name for messages ("syscall N" for one the table lacks). */
static const char *rrv_syscall_name(int64_t nr) {
  static __thread char unknown[32];
  if (nr >= 0 && nr < RRV_NSYSCALLS && rrv_syscalls[nr].name) return rrv_syscalls[nr].name;
  snprintf(unknown, sizeof unknown, "syscall %lld", (long long)nr);
  return unknown;
}
