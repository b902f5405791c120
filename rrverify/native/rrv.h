/* rrv.h: the interface between rrverify's native core and its Python drivers.
 *
 * This file is parsed by cffi's cdef as well as compiled, so it holds only plain declarations
 * and integer #defines. The event layout here is the trace's event format: see
 * docs/trace-format.md, which must change together with this file. */

struct rrv_session;
struct rrv_recording;   /* the live processes of every session of a recording (recorder.c) */

#define RRV_EVENT_SYSCALL 1
#define RRV_EVENT_RDTSC 2
#define RRV_EVENT_SIGNAL 3
#define RRV_EVENT_EXEC 4
#define RRV_EVENT_EXIT 5

#define RRV_EF_AT_SYSCALL_EXIT 1
#define RRV_EF_RDTSCP 2
#define RRV_EF_REFUSED 4
#define RRV_EF_SEGV_RESTORE 8   /* RDTSC: the trap changed SIGSEGV's state; extra says back to what */
#define RRV_EF_AT_SYSCALL_ENTRY 16 /* SIGNAL: held from user code, delivered at this syscall's
                                      entry (skipped, then restarted after the handler) */
#define RRV_EF_ASYNC_FATAL 32   /* SIGNAL: a fatal signal delivered at once in user code (no
                                   exact point: replay ends the process there) */
#define RRV_EF_PIPE 128         /* SYSCALL: moved bytes through a pipe: extra is one or two
                                   struct rrv_pipe_io */
#define RRV_EF_VFORK 64         /* SYSCALL (fork family): the child shared the caller's memory
                                   until it exec'd or exited; the writes are what it changed */

/* Syscall buffering (preload/syscallbuf.c; docs/trace-format.md, "Buffered syscalls"). */
#define RRV_EVENT_FLUSH 6       /* the buffered syscalls a process made since its last flush:
                                   extra is struct rrv_buffered_syscall records */
#define RRV_EVENT_PATCH 7       /* a syscall site patched into a jump to its stub (writes) */
#define RRV_EVENT_UNWIND 8      /* a buffered syscall under way moved out of the preload, to its
                                   stub's own traced `syscall` (regs: there, as at its entry;
                                   aux: the buffer), before the event that follows */

#define RRV_SYSCALL_PAGE 0x70000000ull  /* mapped by the recorder into every exec'd image */
#define RRV_UNTRACED_SYSCALL 0x70000000ull /* `syscall; ret` the tracee filter lets through
                                              (for the buffered numbers only) */
#define RRV_TRACED_SYSCALL 0x70000010ull   /* `syscall; ret`: the preload's own traced calls */
#define RRV_CALL_PRELOAD_INIT 1000      /* a private syscall number: the preload registers */
#define RRV_PRELOAD_VERSION 1
#define RRV_SYSCALLBUF_SIZE 1048576     /* per thread, header included */

/* A patch stub, written by the recorder for each patched site (recorder/patch.py): */
#define RRV_STUB_CALL_RETURN 10     /* where the hook returns to when it buffered the syscall */
#define RRV_STUB_TRACED 20          /* ...and when it did not: the stub's own traced syscall */
#define RRV_STUB_SYSCALL 28         /* that `syscall` instruction */
#define RRV_STUB_SITE 32            /* 8 bytes: the address of the site the stub stands for */
#define RRV_STUB_DISPLACED 40       /* the site's displaced instructions, then a jump back */

#define RRV_HDR_DISABLED 1      /* buffer nothing: every syscall through ptrace */
#define RRV_HDR_NO_WRITES 2     /* buffer no write-family syscall (a file is mapped shared) */
#define RRV_HDR_SHARING 4       /* the process shares memory and takes turns running user code
                                   (docs/checks.md §13.3): buffer only syscalls that cannot wait
                                   for another process, at most RRV_SHARING_MAX_RECORDS of them
                                   between two ptrace stops, where the turn can pass */
#define RRV_SHARING_MAX_RECORDS 64

#define RRV_BF_SENT 1           /* sent_digest is the digest of the bytes the syscall sent */
#define RRV_BF_PIPE 2           /* followed by a struct rrv_pipe_io */
#define RRV_WRITE_SENT 2        /* in a tracee's buffer only: the bytes a write sent (the
                                   recorder turns them into sent_digest and pipe hashes) */

struct rrv_syscallbuf_hdr {     /* the start of a thread's buffer; records follow */
  uint32_t num_rec_bytes;       /* bytes of records committed since the last flush */
  uint32_t num_records;         /* ...and how many */
  uint64_t io_fds;              /* fds (bit 63: any >= 63) a record since the last flush read
                                   or wrote: closing one goes through ptrace, so that the
                                   recorder still finds which pipe each was at the flush */
  uint32_t in_hook;             /* 1 while the hook runs: `frame` holds the caller's registers */
  uint32_t flags;               /* RRV_HDR_*: set by the recorder, as writes of a recorded event */
  uint64_t frame;               /* the running hook's struct rrv_hook_frame */
  uint32_t size;                /* bytes of it the preload uses, this header included (the
                                   recorder's frame size, at most RRV_SYSCALLBUF_SIZE) */
  uint32_t max_records;         /* records between flushes (0: as many as fit): the recorder's
                                   checkpoint interval, so that a loop of buffered syscalls
                                   still reaches a ptrace stop, where checkpoints are taken */
  uint64_t reserved[3];
};

struct rrv_buffered_syscall {   /* one buffered syscall: in a buffer, and in a FLUSH event */
  uint32_t size;                /* the whole record, a multiple of 8 */
  uint16_t nwrites;             /* struct rrv_write (INLINE) + data follow, as in events */
  uint16_t flags;               /* RRV_BF_* */
  int32_t nr;
  int32_t reserved;
  int64_t result;
  uint64_t args[6];
  uint64_t site;                /* the patched site's stub (RRV_STUB_SITE says which site) */
  uint64_t sent_digest;
};

struct rrv_hook_frame {         /* what the hook's entry pushed, lowest address first */
  uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax, rflags;
  uint64_t ret;                 /* into the stub: its start + RRV_STUB_CALL_RETURN */
};

struct rrv_preload_init {       /* RRV_CALL_PRELOAD_INIT's argument */
  uint32_t version, reserved;
  uint64_t buffer;              /* the calling thread's buffer */
  uint64_t stubs, stubs_size;   /* r-x memory near the libraries, for the recorder's stubs */
  uint64_t hook_entry;          /* what stubs call */
};

#define RRV_WRITE_INLINE 0
#define RRV_WRITE_BLOB 1
#define RRV_DIGEST_BYTES 32

/* Why rrv_record_run / rrv_replay_run returned to Python. */
#define RRV_STOP_FLUSH 1
#define RRV_STOP_EXEC 2
#define RRV_STOP_EXITED 3
#define RRV_STOP_UNSUPPORTED 4
#define RRV_STOP_ERROR 5
#define RRV_STOP_NEED_EVENTS 6
#define RRV_STOP_DIVERGED 7
#define RRV_STOP_END_OF_TRACE 8
#define RRV_STOP_CHECKPOINT 9     /* record: take a checkpoint; tracee at a syscall-exit stop */
#define RRV_STOP_SEGMENT_END 10   /* replay: reached stop_at_event, at a syscall-exit stop */
#define RRV_STOP_EXEC_RESTORE 11  /* replay: the recorded execve succeeded: restore its checkpoint */
#define RRV_STOP_CHECKPOINT_AT_EXIT 12 /* record: at an exit's seccomp stop, not yet recorded */
#define RRV_STOP_SEGV_RESTORE 14  /* record/replay: put SIGSEGV's mask bit and action back as
                                     segv_restore says (a trapped rdtsc changed them) */
#define RRV_STOP_NEW_PROCESS 15  /* record: session.new_pid was born to process `current`
                                     (stopped at its first stop, not yet adopted) */
#define RRV_STOP_ADOPTED 17      /* record: process `current` was handed to this session by another
                                    tracer thread (rrv_session_hand_over) and is its own now */
#define RRV_STOP_DONE 18         /* record: the session is closed and has no process left (or was
                                    told to stop): its tracer thread ends */
#define RRV_STOP_PATCH_SITE 16   /* record: a bufferable syscall at an unpatched site (patch_site):
                                    rrv_record_patch_sites or rrv_record_keep_site decides */
#define RRV_STOP_FILE_FD 13       /* replay: make the tracee a memfd of file_index (it is parked
                                     before the mmap that maps it, issued again on resume) */

/* The aux of an mmap of /dev/zero (an anonymous mapping by another name). */
#define RRV_MMAP_ZERO_DEVICE 0xffffffffffffffffull

/* The kernel's per-thread trap state (thread.trap_nr, error_code, cr2) is set by every fault
 * that raises a signal and written into every later signal frame (sigcontext trapno, err, cr2):
 * a checkpoint says what set it last, so that a restore can set it again. */
#define RRV_TRAP_NONE 0
#define RRV_TRAP_RDTSC 1        /* a trapped rdtsc: #GP, error code 0 */
#define RRV_TRAP_OTHER 2        /* another fault: not restored (docs/checks.md §11) */

/* What an RRV_STOP_UNSUPPORTED recording stopped at (rrv_recorder.stop_what). */
#define RRV_UNSUP_SYSCALL 1         /* stop_nr: the x86-64 syscall number */
#define RRV_UNSUP_SIGNAL 2          /* stop_nr: the signal number */
#define RRV_UNSUP_FOREIGN_SYSCALL 3 /* stop_nr, stop_arch, stop_addr: from the SIGSYS */
#define RRV_UNSUP_HELD_SIGNAL 4     /* stop_nr: a handled signal held too long (message) */
#define RRV_UNSUP_SHARED_MEMORY 5   /* a process sharing memory waited too long (message) */

/* Kinds of divergence found by the replayer. */
#define RRV_DIV_EVENT_KIND 1
#define RRV_DIV_SYSCALL 2
#define RRV_DIV_REGS 3
#define RRV_DIV_FPU 4
#define RRV_DIV_RESULT 5
#define RRV_DIV_DATA 6
#define RRV_DIV_SIGINFO 7
#define RRV_DIV_SIGNAL 8
#define RRV_DIV_EXIT_STATUS 9
#define RRV_DIV_EXITED_EARLY 10
#define RRV_DIV_TRACE 11
#define RRV_DIV_SYSCALLBUF 12  /* a syscall-breakpoint check failed (detail: which) */

#define RRV_MAX_HELD 8          /* handled signals held at once per process */

struct rrv_regs {       /* struct user_regs_struct, x86-64 */
  uint64_t r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax,
      rip, cs, eflags, rsp, ss, fs_base, gs_base, ds, es, fs, gs;
};

struct rrv_event {      /* fixed part of every event; 8-byte aligned, little-endian */
  uint32_t size;        /* whole event in bytes, a multiple of 8 */
  uint8_t kind;         /* RRV_EVENT_* */
  uint8_t flags;        /* RRV_EF_* */
  uint16_t nwrites;     /* memory writes that follow */
  int32_t tid;
  int32_t nr;           /* syscall number, signal number, or wait status (EXIT) */
  int64_t result;       /* syscall result, or the TSC value (RDTSC) */
  uint64_t aux;         /* per kind: see docs/trace-format.md */
  uint64_t fpu_digest;  /* digest of x87/SSE/AVX state at the event */
  uint32_t extra_len;   /* kind-specific bytes after the writes */
  uint32_t reserved;
  struct rrv_regs regs; /* registers at the event */
};

struct rrv_write {      /* followed by len bytes (INLINE) or a 32-byte digest (BLOB), padded to 8 */
  uint64_t addr;
  uint32_t len;
  uint32_t how;
};

struct rrv_rlimit { int resource; uint64_t cur, max; };

struct rrv_spawn {
  const char *path;
  char **argv;
  char **envp;
  const char *cwd;
  int cpu;              /* pin tracee (and caller) to this CPU; -1: don't */
  int exec_fd;          /* >= 0: execute this file (execveat AT_EMPTY_PATH), not `path` */
  int sandbox;          /* replay: confine the tracee (tracee.c: enter_replay_sandbox) */
  int syscallbuf;       /* record: the filter lets the buffered syscalls through at
                           RRV_UNTRACED_SYSCALL */
  int nrlimits;
  struct rrv_rlimit rlimits[16];
};

struct rrv_file_write {    /* a SYSCALL event's extra for a write to a file mapped shared */
  uint64_t mapping;        /* the address of a shared mapping of the file */
  uint64_t offset;         /* the file offset the written data went to */
};

#define RRV_PIPE_READ 0
#define RRV_PIPE_WRITE 1
#define RRV_PIPE_UNTRACKED 2    /* splice, tee, sendfile: bytes moved that no hash covers */

struct rrv_pipe_io {       /* a SYSCALL event's extra when flagged RRV_EF_PIPE */
  uint64_t pipe;           /* the pipe's inode number */
  uint64_t hash;           /* rrv_poly_hash of the bytes read or written (result of them) */
  uint32_t direction;      /* RRV_PIPE_* */
  uint32_t reserved;
};

struct rrv_segv_restore {  /* an RDTSC event's extra when flagged RRV_EF_SEGV_RESTORE */
  uint64_t mask;           /* the signal mask to set */
  uint64_t action[4];      /* SIGSEGV's action to set: handler, flags, restorer, mask */
};

struct rrv_held_signal { int sig; uint8_t info[128]; };

struct rrv_recorder {   /* one recorded process: its state and its own event stream */
  int pid;
  int index;            /* the process's number in the trace (processes.jsonl) */
  struct rrv_session *session;
  int status;           /* wait status once exited */
  int stop_what;        /* UNSUPPORTED: RRV_UNSUP_* */
  int64_t stop_nr;
  uint32_t stop_arch;   /* AUDIT_ARCH_* of a foreign syscall */
  uint64_t stop_addr;   /* the address of a foreign syscall's instruction */
  char message[512];
  uint8_t *buf;         /* events not yet handed to Python */
  size_t len, cap;
  uint64_t buffered_events;
  size_t flush_at;
  uint64_t events, syscalls;
  size_t blob_threshold;
  void *handle;         /* passed to the Python callbacks */
  uint64_t checkpoint_every;        /* events (buffered syscalls count) between checkpoints
                                       (0: no event trigger) */
  uint64_t checkpoint_interval_ns;  /* time between checkpoints (0: no time trigger) */
  uint64_t next_checkpoint_event, last_checkpoint_ns;  /* events + buffered_syscalls */
  int exit_pending;     /* CHECKPOINT_AT_EXIT returned; the exit is recorded on the next run
                           unless rrv_record_park_for_exit parked the tracee */
  uint64_t parked_mask; /* the signal mask of a parked tracee (blocked meanwhile) */
  /* private */
  int last_trap;        /* RRV_TRAP_*: what last set the kernel's per-thread trap state */
  int program_tsc_mode; /* the TSC mode the program set (PR_SET_TSC) and sees (PR_GET_TSC) */
  int program_no_new_privs; /* what PR_GET_NO_NEW_PRIVS shows the program */
  int64_t restart_nr;       /* the last syscall interrupted for restart_syscall, its args */
  struct rrv_regs restart_args;
  int parked, exit_checkpoint_offered, listening;
  int delivering;       /* a signal being delivered by single-step; its event still open */
  uint8_t self_mem_fds[1024]; /* which descriptors are the tracee's own /proc/PID/mem */
  uint64_t known_mask;  /* the tracee's signal mask as of its last change */
  int own_affinity;     /* it set its own CPU affinity (the session's cpu_view no longer applies) */
  int signal_delivered; /* a signal was delivered to it (or to its parent before the fork)
                           since its exec: a signal frame may hold a saved ip at a syscall
                           site, so the patcher patches no site but the one it stops at */
  int altstack_set;     /* it or an ancestor set an alternate signal stack: an exec keeps the
                           stack's SS_AUTODISARM flag, so a checkpoint after an exec reads it */
  uint64_t actions_set; /* signals whose action it set since its exec (a default action keeps
                           the flags and mask it was set with: checkpoints read these too) */
  int shared_file_mapped;   /* it has made a shared file mapping (writes may show there) */
  void *program_filters;    /* the seccomp filters the program installed (program_filter.c) */
  uint64_t segv_action[4]; /* SIGSEGV's kernel sigaction: handler, flags, restorer, mask */
  struct rrv_segv_restore segv_restore;
  uint8_t delivered_siginfo[128];
  int resume_op, resume_sig;
  int after_syscall;     /* at a syscall's exit, no user code run since: a signal arriving
                           now is delivered there. Cleared by the driver once it takes a
                           checkpoint there: no segment can start with a delivery at an exit
                           (replay delivers those from the exit's stop only), so such a
                           signal is then handled as one arriving in user code */
  struct rrv_regs exit_regs;
  uint64_t last_flush_ns;
  size_t open_event;    /* offset of an event not yet sealed, or (size_t)-1 */
  int need_resume;      /* the session loop resumes it (resume_op, resume_sig) */
  int gone;             /* exited and reaped: no more stops */
  int in_syscall;       /* resumed into the syscall below: its exit stop comes next */
  int64_t sc_nr;
  struct rrv_regs sc_regs;
  uint64_t sc_fpu;
  int sc_sets_segv;
  uint64_t sc_new_segv[4];
  uint64_t sc_clone_flags;
  void *vfork_snapshot; /* the caller's writable memory as its vfork child began */
  int nheld;            /* handled signals that came in user code, for the next syscall entry */
  struct rrv_held_signal held[RRV_MAX_HELD];
  uint64_t held_since_ns;
  int delivering_held;  /* a held signal resumed with: its delivery stop comes next */
  int shared_member;    /* shares writable memory with another process: runs user code only
                           while it holds the session's token */
  void *shared_snapshot;/* its shared mappings as it went into the kernel without the token */
  int awaiting_token;   /* 1: at a syscall's exit stop, 2: at its birth; waiting to run */
  uint64_t token_wait_since_ns;
  /* syscall buffering (preload/) */
  int syscallbuf_allowed;   /* the preload may register (not --no-syscallbuf) */
  uint64_t syscallbuf;      /* its buffer's header in the tracee (0: none registered) */
  uint64_t stubs, stubs_size, stubs_used, hook_entry;  /* from its registration */
  uint64_t patch_site;      /* PATCH_SITE: the `syscall` instruction's address */
  int nkept;                /* sites left unpatched (the patcher refused them) */
  uint64_t kept_sites[64];
  int redo_stop;            /* handle the current seccomp stop again (a site was kept) */
  int test_no_unwind;       /* tests only: deliver held signals inside the preload (breaking
                               the #3285 invariant, for the verifier's check to find) */
  int watching_entries;     /* resumed with PTRACE_SYSCALL from user code (signals held): a
                               syscall-entry stop may come, of a buffered syscall too */
  int in_parent_memory;     /* a vfork child, until it execs: its parent's code and buffer */
  int capture_buffer_flags; /* the syscall under way changed them: recorded at its exit */
  uint64_t buffered_syscalls, flushes, patched_sites;
  /* a hand-over to another session (rrv_session_hand_over): what the tracee is given back */
  struct rrv_regs handover_regs;
  uint64_t handover_mask;
  struct rrv_recorder *inbox_next;
};

struct rrv_session {    /* the processes one tracer thread records, run concurrently */
  int current;          /* the index of the process the last stop concerns */
  int nprocs, cap;
  struct rrv_recorder **procs;   /* by index; owned by the Python driver */
  int live;             /* processes not yet gone: the first `live` entries of alive[] */
  int *alive;           /* their indexes (a build may have run thousands before) */
  int new_pid;          /* NEW_PROCESS: the child born to `current` */
  uint64_t new_flags;   /* its clone flags (CLONE_VM, CLONE_VFORK, ...) */
  uint64_t held_timeout_ns;  /* a handled signal held longer, or a process waiting longer
                                for the token, ends the recording */
  int token_holder;     /* the index of the process sharing memory that runs user code, -1 */
  int serialize;        /* every process takes the token: one runs at a time (rr's way; for
                           comparison, rrverify record --serialize) */
  int cpu_view_bytes;   /* > 0: sched_getaffinity shows a process that never set its own
                           affinity cpu_view (the CPUs it would have natively), not the CPU
                           the recorder pinned it to */
  uint8_t cpu_view[128];
  char message[512];
  int cpu;              /* the CPU its tracer thread runs on: processes handed to it move there */
  int closed;           /* no more hand-overs: rrv_session_run returns DONE once none is left */
  int stopping;         /* ...or at once (the recording failed elsewhere) */
  /* private */
  struct rrv_recording *recording;  /* what the sessions of one recording share (required) */
  int tid;              /* its tracer thread, once rrv_session_run has run */
  int kick_ready;       /* kick_timer exists: another thread may arm it */
  void *kick_timer;
  struct rrv_recorder *inbox;    /* processes handed to it, parked, not yet adopted */
  int nearly;           /* first stops of children not yet announced: pid, status */
  int early[64][2];
  int timer_ready;
  void *timer;
};

struct rrv_divergence {
  int kind;             /* RRV_DIV_* */
  uint64_t event_index;
  int expected_kind, found_kind;
  int64_t expected_nr, found_nr;
  int64_t expected_value, found_value;
  struct rrv_regs expected_regs, found_regs;
  uint64_t expected_fpu, found_fpu;
  uint64_t site;        /* a buffered syscall's: the program's patched `syscall` (0: none) */
  char detail[512];
};

struct rrv_replayer {
  int pid;
  int status;
  char message[512];
  const uint8_t *events;  /* decoded events supplied by Python */
  size_t len, pos;
  int eof;                /* no events beyond `events` */
  uint64_t event_index;   /* index of the event at pos */
  int echo;
  void *handle;
  struct rrv_divergence div;
  uint64_t syscalls_executed, syscalls_emulated, signals, rdtscs;
  uint64_t inexact_deaths;  /* the process died at a point replay cannot reach (SIGKILL, a
                               fatal signal in user code): killed there (EXITED) */
  uint64_t stop_at_event;   /* stop with SEGMENT_END once this event is next (0: never) */
  int stop_before_exit;     /* ...at that event's exit syscall, parked (else at the syscall-
                               exit stop before it) */
  uint64_t exit_syscall_event; /* 1 + the index of the exit/exit_group event replayed, or 0 */
  /* private */
  int resume_op, resume_sig;
  int64_t last_nr;
  uint64_t file_index;     /* FILE_FD: the files.jsonl index */
  int delivering;          /* a signal delivered by single-step; its frame is applied next */
  void *delivered_event;   /* a copy of that SIGNAL event (its writes are the frame) */
  int wait_mask_set;       /* that signal went in under a waiting syscall's mask */
  struct rrv_segv_restore segv_restore;   /* SEGV_RESTORE: what to put back */
  uint64_t mask_before_wait;
  /* syscall buffering: the FLUSH event being replayed (its records hit the breakpoint) */
  int flushing;             /* begun: the current event is that FLUSH */
  size_t flush_record;      /* its next record's offset within it */
  uint32_t flush_left;      /* records not yet hit */
  uint64_t flush_index;     /* its event index */
  int armed;                /* the syscall breakpoint is set */
  uint64_t buffered_syscalls, breakpoint_checks, flushes;
};

int rrv_spawn(const struct rrv_spawn *spec, char *err, size_t errlen);
int rrv_record_init(struct rrv_recorder *r, int pid);
int rrv_session_add(struct rrv_session *s, struct rrv_recorder *r);
int rrv_session_adopt(struct rrv_session *s, struct rrv_recorder *child, int pid,
                      const struct rrv_recorder *parent);
int rrv_session_run(struct rrv_session *s);
int rrv_session_hand_over(struct rrv_session *from, struct rrv_recorder *r,
                          struct rrv_session *to);
void rrv_session_close(struct rrv_session *s, int stopping);
struct rrv_recording *rrv_recording_new(void);
void rrv_recording_free(struct rrv_recording *g);
size_t rrv_record_sealed(const struct rrv_recorder *r);
void rrv_record_consumed(struct rrv_recorder *r, size_t n, uint64_t count);
void rrv_session_free(struct rrv_session *s);
int rrv_record_park_for_exit(struct rrv_recorder *r);
int rrv_record_died(struct rrv_recorder *r, int status);
void rrv_record_free(struct rrv_recorder *r);
void rrv_replay_set_pid(struct rrv_replayer *r, int pid);
int rrv_replay_run(struct rrv_replayer *r);
int rrv_record_patch_sites(struct rrv_recorder *r, size_t n, const uint64_t *sites,
                           const uint64_t *stub_at, const uint8_t *const *jumps,
                           const uint64_t *jump_lens, const uint8_t *const *stubs,
                           const uint64_t *stub_lens);
void rrv_record_keep_site(struct rrv_recorder *r);
int rrv_map_syscall_page(int pid, uint64_t gadget, char *err, size_t errlen);
void rrv_kill(int pid);
void rrv_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t out[4]);
int rrv_getregs(int pid, struct rrv_regs *regs);
int rrv_setregs(int pid, const struct rrv_regs *regs);
int rrv_run_initial_exec(int pid, char *err, size_t errlen);
/* 0: done, *result is the syscall's; -1: failed (err); -2: the tracee died, *result is its
 * wait status; -3: another syscall than the injected one arrived (not run) */
int rrv_inject_syscall(int pid, uint64_t gadget, int64_t nr, const uint64_t args[6],
                       int64_t *result, char *err, size_t errlen);
int rrv_inject_syscalls(int pid, uint64_t gadget, size_t n, const int64_t *nrs,
                        const uint64_t *args, int64_t *results, char *err, size_t errlen);
int rrv_park_before_syscall(int pid, int *status);
int rrv_get_sigmask(int pid, uint64_t *mask);
int rrv_trap_rdtsc_at(int pid, uint64_t rip);
int rrv_set_sigmask(int pid, uint64_t mask);
int rrv_get_xstate(int pid, uint8_t *buf, size_t cap);
int rrv_set_xstate(int pid, const uint8_t *buf, size_t len);
uint64_t rrv_fpu_digest_of(const uint8_t *area, size_t len);
uint64_t rrv_poly_hash(uint64_t h, const uint8_t *data, size_t len);

/* A region of a checkpoint's memory to read (checkpoints/memory_reader.c). */
#define RRV_REGION_READ 0   /* every page is read */
#define RRV_REGION_ANON 1   /* private anonymous: a page never touched is zeros, not read */
#define RRV_REGION_FILE 2   /* private mapping of a file stored whole and unchanged: a page the
                               process never copied, within the file's first in_file pages
                               from the region's start, is the file's, not read */
#define RRV_RUN_FILE 0
#define RRV_RUN_ZERO 1
#define RRV_RUN_READ 2
struct rrv_region_plan { uint64_t start, npages, in_file; int mode; };
struct rrv_run { uint32_t region, kind; uint64_t first, count; };  /* pages of its region */
int64_t rrv_plan_reads(int pagemap_fd, const struct rrv_region_plan *regions, size_t n,
                       uint64_t chunk_pages, struct rrv_run *runs, size_t cap);
int64_t rrv_read_runs(int pid, int mem_fd, const struct rrv_region_plan *regions,
                      const struct rrv_run *runs, size_t n, uint8_t *const *bufs,
                      uint32_t *unreadable, size_t cap);
void rrv_page_hashes(const uint8_t *data, size_t npages, uint64_t *out);
uint64_t rrv_fast_digest(const uint8_t *data, size_t len, uint64_t seed);
int rrv_page_digests(const uint8_t *data, const uint32_t *which, size_t n, uint8_t *out);
/* Blobs stored many at a time (rrverify/native/blob_files.c). */
int rrv_sha256_many(const uint8_t *const *datas, const uint64_t *lens, size_t n, uint8_t *out);
void rrv_files_exist(const char *const *paths, size_t n, uint8_t *present);
int rrv_write_files(const char *const *paths, const uint8_t *const *datas, const uint64_t *lens,
                    size_t n);
struct rrv_unchanged;   /* a process's page names by address (checkpoints/unchanged_pages.c) */
struct rrv_unchanged *rrv_unchanged_new(void);
void rrv_unchanged_free(struct rrv_unchanged *u);
int64_t rrv_name_runs(struct rrv_unchanged *u, size_t nruns, const uint64_t *addrs,
                      const uint8_t *const *datas, const uint64_t *npages, uint8_t *names,
                      uint32_t *changed, uint64_t *nchanged);
void rrv_forget_mem(void);

/* The mapping of a process that holds an address, as PROCMAP_QUERY reports it (rrv_vma_at). */
#define RRV_VMA_READ 1
#define RRV_VMA_WRITE 2
#define RRV_VMA_EXEC 4
#define RRV_VMA_SHARED 8
struct rrv_vma {
  uint64_t start, end, offset, inode;
  uint32_t dev_major, dev_minor;
  uint32_t perms;           /* RRV_VMA_* */
  char name[4096];          /* as /proc/PID/maps shows it; empty for anonymous memory */
};
int rrv_vma_at(int pid, uint64_t addr, struct rrv_vma *out);
uint64_t rrv_now_ns(void);
int rrv_fpu_digest(int pid, uint64_t *out);
long rrv_bench_ptrace_floor(long n, int cpu, int emulate);
