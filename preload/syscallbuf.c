/* syscallbuf.c: the library the recorder preloads into every recorded process (LD_PRELOAD).
 *
 * It makes common syscalls without a ptrace stop. The recorder patches the `syscall`
 * instructions of libc (and of the vDSO's stubs) that make them into jumps to per-site stubs;
 * a stub calls rrv_syscall_hook_entry below, which either buffers the syscall — issues it at
 * the one untraced `syscall` instruction of the recorder's syscall page, which the tracee
 * filter lets through for the numbers this file buffers, and appends what it returned and
 * wrote to this thread's buffer — or returns to the stub's own traced `syscall`.
 * The recorder moves the buffer into the trace as one FLUSH at the next ptrace stop.
 *
 * Rules this code lives by (docs/checks.md, "Syscall buffering"):
 * - It never makes a traced syscall itself while the hook runs, so no ptrace stop ever has
 *   its ip in here: a signal, a switch or a checkpoint finds a thread in this code only while
 *   it runs user code or at the untraced syscall, and the recorder then either lets it run
 *   out of here or unwinds it to its stub (rr issue #3285).
 * - A record is committed by one store (num_rec_bytes) after the syscall completed: an
 *   unwound syscall leaves no half-written state behind.
 * - It reads caller memory only where the kernel just read or wrote it successfully, so it
 *   never faults where the kernel would have answered EFAULT (readv/writev's iovec arrays
 *   excepted: they are read before the syscall; a bad one ends the recording, see recorder).
 * - No libc, no vector registers (-mgeneral-regs-only): the application's state at the site
 *   is exactly what it finds after the stub, bar rax (the result), rcx and r11.
 */
#include <stddef.h>
#include <stdint.h>
#include <asm/unistd.h>
#include "rrv.h"

#define HIDDEN __attribute__((visibility("hidden")))
#define barrier() __asm__ volatile("" ::: "memory")

/* From the kernel's UAPI, without libc headers. */
#define PROT_READ 1
#define PROT_WRITE 2
#define PROT_EXEC 4
#define MAP_PRIVATE 2
#define MAP_ANONYMOUS 0x20
#define MAP_TYPE 0x0f
#define SIGSEGV 11
#define AT_FDCWD (-100)
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_WAIT_BITSET 9
#define FUTEX_WAKE_BITSET 10
#define FUTEX_CMD(op) ((op) & ~(128 | 256))   /* without FUTEX_PRIVATE_FLAG, _CLOCK_REALTIME */
#define KERNEL_SIGACTION_SIZE 32   /* handler, flags, restorer, mask */
#define MADV_NORMAL 0
#define MADV_RANDOM 1
#define MADV_SEQUENTIAL 2
#define MADV_WILLNEED 3
#define MADV_HUGEPAGE 14
#define MADV_NOHUGEPAGE 15
#define MADV_DONTDUMP 16
#define MADV_DODUMP 17
#define STUBS_SIZE (64 * 1024)
#define MAX_IOVECS 16

struct iovec_k { uint64_t base, len; };

static __thread struct rrv_syscallbuf_hdr *thread_buffer
    __attribute__((tls_model("initial-exec")));

/* The entry every stub calls (after stepping over the red zone): saves the caller's registers
 * as a struct rrv_hook_frame, runs rrv_syscall_hook, and returns into the stub where it says:
 * + RRV_STUB_CALL_RETURN with rax the result, or RRV_STUB_TRACED with every register as it
 * was, for the stub's own traced syscall. */
__asm__(".text\n"
        ".globl rrv_syscall_hook_entry\n"
        ".hidden rrv_syscall_hook_entry\n"
        ".type rrv_syscall_hook_entry, @function\n"
        "rrv_syscall_hook_entry:\n"
        "  pushfq\n"
        "  push %rax\n push %rbx\n push %rcx\n push %rdx\n push %rsi\n push %rdi\n push %rbp\n"
        "  push %r8\n push %r9\n push %r10\n push %r11\n push %r12\n push %r13\n push %r14\n"
        "  push %r15\n"
        "  mov %rsp, %rdi\n"
        "  mov %rsp, %rbx\n"
        "  and $-16, %rsp\n"
        "  cld\n"
        "  call rrv_syscall_hook\n"
        "  mov %rbx, %rsp\n"
        "  test %eax, %eax\n"
        "  jz 1f\n"
        "  addq $(" "20 - 10" "), 128(%rsp)\n"   /* RRV_STUB_TRACED - RRV_STUB_CALL_RETURN */
        "1:\n"
        "  pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %r11\n pop %r10\n pop %r9\n pop %r8\n"
        "  pop %rbp\n pop %rdi\n pop %rsi\n pop %rdx\n pop %rcx\n pop %rbx\n pop %rax\n"
        "  popfq\n"
        "  ret\n"
        ".size rrv_syscall_hook_entry, .-rrv_syscall_hook_entry\n");
_Static_assert(RRV_STUB_TRACED - RRV_STUB_CALL_RETURN == 10, "hook entry's return adjustment");
_Static_assert(offsetof(struct rrv_hook_frame, ret) == 128, "hook entry's frame layout");
void rrv_syscall_hook_entry(void);

/* A syscall through one of the syscall page's instructions. `tag` goes in rcx, which the
 * kernel overwrites: replay, stopping before the instruction, reads the site from it. */
static inline long page_syscall(uint64_t at, long nr, long a0, long a1, long a2, long a3,
                                long a4, long a5, uint64_t tag) {
  register long r10 __asm__("r10") = a3;
  register long r8 __asm__("r8") = a4;
  register long r9 __asm__("r9") = a5;
  long ret;
  __asm__ volatile("call *%[at]"
                   : "=a"(ret), "+c"(tag), "+r"(r10), "+r"(r8), "+r"(r9)
                   : "a"(nr), "D"(a0), "S"(a1), "d"(a2), [at] "r"(at)
                   : "r11", "memory", "cc");
  return ret;
}

static void copy_bytes(uint8_t *to, const uint8_t *from, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) *(uint64_t *)(to + i) = *(const uint64_t *)(from + i);
  for (; i < n; i++) to[i] = from[i];
}

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

/* What a buffered syscall writes or sends: up to MAX_IOVECS pieces of caller memory. */
struct pieces {
  int n;
  uint64_t addr[MAX_IOVECS];
  uint64_t len[MAX_IOVECS];    /* the most it may be */
  int result_sized;            /* the syscall's result says how much of them it is */
};

static void piece(struct pieces *p, uint64_t addr, uint64_t len) {
  if (addr && len) {
    p->addr[p->n] = addr;
    p->len[p->n++] = len;
  }
}

static size_t pieces_room(const struct pieces *p) {
  size_t n = 0;
  for (int i = 0; i < p->n; i++) n += sizeof(struct rrv_write) + align8(p->len[i]);
  return n;
}

static int iovec_pieces(struct pieces *p, uint64_t iov, uint64_t cnt) {
  if (cnt > MAX_IOVECS || (cnt && !iov)) return 0;
  const struct iovec_k *v = (const struct iovec_k *)iov;
  for (uint64_t i = 0; i < cnt; i++) piece(p, v[i].base, v[i].len);
  p->result_sized = 1;
  return 1;
}

static int path_is_plain(uint64_t dirfd, const char *path) {
  if (!path) return 0;
  if (path[0] != '/') return (int)dirfd == AT_FDCWD;
  /* /proc and /dev: the recorder watches what is opened there (its own memory, devices) */
  return !((path[1] == 'p' && path[2] == 'r' && path[3] == 'o' && path[4] == 'c') ||
           (path[1] == 'd' && path[2] == 'e' && path[3] == 'v'));
}

/* Which memory the syscall writes (out) and sends (sent), or 0 if it is not buffered. */
static uint64_t fd_bit(uint64_t fd) { return fd < 63 ? 1ull << fd : 1ull << 63; }

static int moves_data(long nr) {
  return nr == __NR_read || nr == __NR_readv || nr == __NR_write || nr == __NR_writev;
}

static int classify(long nr, const uint64_t *a, uint32_t flags, uint64_t h_io_fds,
                    struct pieces *out, struct pieces *sent) {
  switch (nr) {
    case __NR_read: case __NR_pread64: case __NR_getdents64: case __NR_readlink:
      piece(out, a[1], a[2]);
      out->result_sized = 1;
      return nr != __NR_readlink || path_is_plain(AT_FDCWD, (const char *)a[0]);
    case __NR_readv:
      return iovec_pieces(out, a[1], a[2]);
    case __NR_write: case __NR_pwrite64:
      if (flags & RRV_HDR_NO_WRITES) return 0;
      piece(sent, a[1], a[2]);
      sent->result_sized = 1;
      return 1;
    case __NR_writev:
      if (flags & RRV_HDR_NO_WRITES) return 0;
      return iovec_pieces(sent, a[1], a[2]);
    case __NR_fstat:
      piece(out, a[1], 144);
      return 1;
    case __NR_newfstatat:
      piece(out, a[2], 144);
      return a[1] && (path_is_plain(a[0], (const char *)a[1]) || ((const char *)a[1])[0] == 0);
    case __NR_statx:
      piece(out, a[4], 256);
      return a[1] && (path_is_plain(a[0], (const char *)a[1]) || ((const char *)a[1])[0] == 0);
    case __NR_openat:
      return path_is_plain(a[0], (const char *)a[1]);
    case __NR_access:
      return path_is_plain(AT_FDCWD, (const char *)a[0]);
    case __NR_faccessat: case __NR_faccessat2:
      return path_is_plain(a[0], (const char *)a[1]);
    case __NR_close:
      return !(h_io_fds & fd_bit(a[0]));
    case __NR_lseek: case __NR_getpid: case __NR_getppid: case __NR_gettid:
      return 1;
    case __NR_clock_gettime:
      piece(out, a[1], 16);
      return 1;
    case __NR_gettimeofday:
      piece(out, a[0], 16);
      piece(out, a[1], 8);
      return 1;
    case __NR_time:
      piece(out, a[0], 8);
      return 1;
    case __NR_poll:
      if (a[2] != 0 || a[1] > 64) return 0;   /* a zero timeout only: it never blocks */
      piece(out, a[0], a[1] * 8);
      return 1;
    case __NR_futex:     /* waits and wakes write no memory; their result is all there is */
      switch (FUTEX_CMD(a[1])) {
        case FUTEX_WAKE: case FUTEX_WAKE_BITSET:
          return 1;
        case FUTEX_WAIT: case FUTEX_WAIT_BITSET:
          return a[3] == 0;  /* a timeout stays traced: its restart is the kernel's own block */
        default:
          return 0;
      }
    /* Replay runs these again, as it runs them traced (replayer.c: replay_runs): they change
     * the process itself (its actions, its break, its memory map). */
    case __NR_rt_sigaction:   /* SIGSEGV's action stays traced: the recorder keeps a copy */
      if (a[3] != 8 || (a[1] && (int)a[0] == SIGSEGV)) return 0;   /* the kernel's int */
      if (a[2]) piece(out, a[2], KERNEL_SIGACTION_SIZE);
      return 1;
    case __NR_brk:
      return 1;
    case __NR_mmap:           /* private anonymous memory; a file's mapping stays traced */
      return (a[3] & MAP_ANONYMOUS) && (a[3] & MAP_TYPE) == MAP_PRIVATE;
    case __NR_madvise:   /* advice that changes no memory */
      return a[2] == MADV_NORMAL || a[2] == MADV_RANDOM || a[2] == MADV_SEQUENTIAL ||
             a[2] == MADV_WILLNEED || a[2] == MADV_HUGEPAGE || a[2] == MADV_NOHUGEPAGE ||
             a[2] == MADV_DONTDUMP || a[2] == MADV_DODUMP;
    default:
      return 0;
  }
}

/* Append the pieces (their first `limit` bytes in all) as writes of kind `how`. */
static uint8_t *put_pieces(uint8_t *p, const struct pieces *ps, uint64_t limit, uint32_t how,
                           uint16_t *count) {
  for (int i = 0; i < ps->n && limit; i++) {
    uint64_t n = ps->len[i] < limit ? ps->len[i] : limit;
    if (ps->result_sized) limit -= n;
    struct rrv_write *w = (struct rrv_write *)p;
    w->addr = ps->addr[i];
    w->len = (uint32_t)n;
    w->how = how;
    copy_bytes(p + sizeof *w, (const uint8_t *)ps->addr[i], n);
    for (size_t k = n; k < align8(n); k++) p[sizeof *w + k] = 0;
    p += sizeof *w + align8(n);
    (*count)++;
  }
  return p;
}

/* Can the syscall block until another process acts (data in a pipe or socket, room in it, a
 * FIFO's other end, a futex wake)? Such a wait must happen at a ptrace stop when processes
 * take turns (RRV_HDR_SHARING): a wait without one would keep the turn from the process it
 * waits for. The others wait on nothing but the kernel. */
static int may_wait_for_another(long nr, const uint64_t *a) {
  switch (nr) {
    case __NR_read: case __NR_readv: case __NR_write: case __NR_writev: case __NR_openat:
      return 1;
    case __NR_futex:
      return FUTEX_CMD(a[1]) == FUTEX_WAIT || FUTEX_CMD(a[1]) == FUTEX_WAIT_BITSET;
    default:
      return 0;
  }
}

static int buffer_syscall(struct rrv_syscallbuf_hdr *h, struct rrv_hook_frame *f) {
  long nr = (long)f->rax;
  uint64_t a[6] = {f->rdi, f->rsi, f->rdx, f->r10, f->r8, f->r9};
  struct pieces out = {0}, sent = {0};
  if (!classify(nr, a, h->flags, h->io_fds, &out, &sent)) return 0;
  if (h->max_records && h->num_records >= h->max_records) return 0;
  if ((h->flags & RRV_HDR_SHARING) &&
      (h->num_records >= RRV_SHARING_MAX_RECORDS || may_wait_for_another(nr, a)))
    return 0;
  uint32_t used = h->num_rec_bytes;
  size_t room = h->size - sizeof *h - used;
  if (sizeof(struct rrv_buffered_syscall) + pieces_room(&out) + pieces_room(&sent) > room)
    return 0;   /* through ptrace: that stop flushes the buffer */
  struct rrv_buffered_syscall *rec =
      (struct rrv_buffered_syscall *)((uint8_t *)(h + 1) + used);
  uint64_t stub = f->ret - RRV_STUB_CALL_RETURN;
  long result = page_syscall(RRV_UNTRACED_SYSCALL, nr, a[0], a[1], a[2], a[3], a[4], a[5], stub);
  rec->nr = (int32_t)nr;
  rec->reserved = 0;
  rec->result = result;
  for (int i = 0; i < 6; i++) rec->args[i] = a[i];
  rec->site = stub;
  rec->sent_digest = 0;
  rec->nwrites = 0;
  rec->flags = 0;
  uint8_t *p = (uint8_t *)(rec + 1);
  if (result >= 0) {
    p = put_pieces(p, &out, out.result_sized ? (uint64_t)result : ~0ull, RRV_WRITE_INLINE,
                   &rec->nwrites);
    if (sent.n && result > 0) {
      p = put_pieces(p, &sent, (uint64_t)result, RRV_WRITE_SENT, &rec->nwrites);
      rec->flags |= RRV_BF_SENT;
    }
  }
  rec->size = (uint32_t)(p - (uint8_t *)rec);
  if (moves_data(nr)) h->io_fds |= fd_bit(a[0]);
  barrier();
  h->num_rec_bytes = used + rec->size;    /* the commit */
  h->num_records++;
  f->rax = (uint64_t)result;
  return 1;
}

/* 0: buffered (f->rax is the result); 1: let the stub make the syscall through ptrace. */
HIDDEN long rrv_syscall_hook(struct rrv_hook_frame *f) {
  struct rrv_syscallbuf_hdr *h = thread_buffer;
  if (!h || h->in_hook || (h->flags & RRV_HDR_DISABLED)) return 1;
  h->frame = (uint64_t)f;
  barrier();
  h->in_hook = 1;
  barrier();
  int buffered = buffer_syscall(h, f);
  barrier();
  h->in_hook = 0;
  return !buffered;
}

static int env_says_recording(char **envp) {
  static const char want[] = "RRVERIFY_SYSCALLBUF=1";
  for (; envp && *envp; envp++) {
    const char *e = *envp;
    size_t i = 0;
    while (want[i] && e[i] == want[i]) i++;
    if (!want[i] && !e[i]) return 1;
  }
  return 0;
}

/* Runs before the program's own constructors. Its few syscalls go through the syscall page's
 * traced instruction, so no ptrace stop has its ip in this library. */
__attribute__((constructor)) static void rrv_preload_init(int argc, char **argv, char **envp) {
  (void)argc;
  (void)argv;
  if (!env_says_recording(envp)) return;
  long buffer = page_syscall(RRV_TRACED_SYSCALL, __NR_mmap, 0, RRV_SYSCALLBUF_SIZE,
                             PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, 0);
  if (buffer < 0 && buffer > -4096) return;
  long stubs = page_syscall(RRV_TRACED_SYSCALL, __NR_mmap, 0, STUBS_SIZE, PROT_READ | PROT_EXEC,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, 0);
  if (stubs < 0 && stubs > -4096) return;
  ((struct rrv_syscallbuf_hdr *)buffer)->size = RRV_SYSCALLBUF_SIZE;
  struct rrv_preload_init init = {
      .version = RRV_PRELOAD_VERSION, .buffer = (uint64_t)buffer, .stubs = (uint64_t)stubs,
      .stubs_size = STUBS_SIZE, .hook_entry = (uint64_t)&rrv_syscall_hook_entry};
  if (page_syscall(RRV_TRACED_SYSCALL, RRV_CALL_PRELOAD_INIT, (long)&init, 0, 0, 0, 0, 0, 0))
    return;
  thread_buffer = (struct rrv_syscallbuf_hdr *)buffer;
}
