/* tracee.c: starting a tracee and the ptrace, memory and register helpers that recording and
 * replay share. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/close_range.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cpuid.h>
#include <elf.h>
#include <pthread.h>
#include <stdatomic.h>
#include <linux/futex.h>
#include <x86intrin.h>
#include "internal.h"

#ifndef PTRACE_EVENT_SECCOMP
#define PTRACE_EVENT_SECCOMP 7
#endif
/* Children are traced from birth (fork, vfork, clone: each its own recorded process); with
 * EXITKILL none outlives the tracer. */
uint64_t rrv_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

void rrv_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t out[4]) {
  __cpuid_count(leaf, subleaf, out[0], out[1], out[2], out[3]);
}

/* A fast non-cryptographic 64-bit digest (for FPU state and sent data; the blob store uses
 * SHA-256). Four independent multiply-rotate lanes over 32-byte blocks keep the CPU's
 * multipliers busy (this runs at every event); the tail and length are folded in at the end. */
#define RRV_P1 0x9e3779b185ebca87ull
#define RRV_P2 0xc2b2ae3d27d4eb4full
static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t lane(uint64_t h, uint64_t w) { return rotl64(h + w * RRV_P2, 31) * RRV_P1; }

static uint64_t digest_update(uint64_t seed, const uint8_t *data, size_t len) {
  uint64_t h0 = seed + RRV_P1, h1 = seed ^ RRV_P2, h2 = seed, h3 = seed - RRV_P1;
  size_t i = 0;
  for (; i + 32 <= len; i += 32) {
    uint64_t w[4];
    memcpy(w, data + i, 32);
    h0 = lane(h0, w[0]);
    h1 = lane(h1, w[1]);
    h2 = lane(h2, w[2]);
    h3 = lane(h3, w[3]);
  }
  uint64_t h = rotl64(h0, 1) + rotl64(h1, 7) + rotl64(h2, 12) + rotl64(h3, 18);
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, data + i, 8);
    h = lane(h, w);
  }
  uint64_t tail = 0;
  memcpy(&tail, data + i, len - i);
  h = lane(h, tail ^ ((uint64_t)len << 3));
  h ^= h >> 33;
  h *= RRV_P2;
  return h ^ (h >> 29);
}

/* A fast 64-bit digest of len bytes, seeded (analysis_cache.KnownFiles: a file's content
 * checked against the SHA-256 an earlier recording named it by, the seed taken from that
 * SHA-256). */
uint64_t rrv_fast_digest(const uint8_t *data, size_t len, uint64_t seed) {
  return digest_update(seed, data, len);
}

/* A fast 64-bit digest of each 4 KiB page: checkpoint capture names (SHA-256) only the pages
 * whose fast digest changed since the previous checkpoint. */
void rrv_page_hashes(const uint8_t *data, size_t npages, uint64_t *out) {
  for (size_t i = 0; i < npages; i++) out[i] = digest_update(0x243f6a8885a308d3ull, data + i * 4096, 4096);
}

/* PROCMAP_QUERY (linux/fs.h since 6.11; this machine's headers predate it). */
struct procmap_query {
  uint64_t size, query_flags, query_addr, vma_start, vma_end, vma_flags, vma_page_size,
      vma_offset, inode;
  uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
  uint64_t vma_name_addr, build_id_addr;
};
#define PROCMAP_QUERY _IOWR('f', 17, struct procmap_query)

/* The mapping of pid holding addr, in one lookup: the recorder asks this at every syscall site
 * it patches, where reading and parsing all of /proc/PID/maps cost 0.3 ms a time. Returns 1,
 * 0 when no mapping holds addr, or -1 with errno (ENOTTY: a kernel before 6.11). */
int rrv_vma_at(int pid, uint64_t addr, struct rrv_vma *out) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/maps", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  struct procmap_query q = {.size = sizeof q, .query_addr = addr,
                            .vma_name_size = sizeof out->name,
                            .vma_name_addr = (uint64_t)(uintptr_t)out->name};
  int rc = ioctl(fd, PROCMAP_QUERY, &q);
  int saved = errno;
  close(fd);
  if (rc < 0) {
    if (saved == ENOENT) return 0;
    errno = saved;
    return -1;
  }
  out->start = q.vma_start;
  out->end = q.vma_end;
  out->offset = q.vma_offset;
  out->inode = q.inode;
  out->dev_major = q.dev_major;
  out->dev_minor = q.dev_minor;
  out->perms = (uint32_t)q.vma_flags & (RRV_VMA_READ | RRV_VMA_WRITE | RRV_VMA_EXEC |
                                         RRV_VMA_SHARED);
  if (!q.vma_name_size) out->name[0] = 0;
  return 1;
}

/* The tracee side of spawning: everything here runs in the forked child before execve. */
/* Every x86-64 syscall stops at the tracer (SECCOMP_RET_TRACE). A syscall of another ABI
 * (i386 through `int $0x80`, x32 numbers: bit 30 and below 1024 past it; other large numbers,
 * -1 included, are ENOSYS on every kernel and go to the tracer) is never run: it raises SIGSYS with si_code
 * SYS_SECCOMP instead, which the recorder refuses and the replayer reports. The same numbers
 * mean other syscalls there (i386 10 is unlink, x86-64 10 is mprotect): a filter that does not
 * check the architecture first misreads them. */
static struct sock_filter tracee_filter[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_STMT(BPF_ALU | BPF_AND | BPF_K, RRV_X32_RANGE_MASK),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, RRV_X32_SYSCALL_BIT, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE),
};

/* The syscalls the preload buffers (preload/syscallbuf.c's classify), which the recording
 * filter lets run without a stop when made at RRV_UNTRACED_SYSCALL, and whose sites the
 * recorder patches (recorder.c: patchable_stop). */
static const int buffered_numbers[] = {
    SYS_read, SYS_pread64, SYS_readv, SYS_write, SYS_pwrite64, SYS_writev, SYS_openat,
    SYS_close, SYS_lseek, SYS_fstat, SYS_newfstatat, SYS_statx, SYS_getdents64, SYS_access,
    SYS_faccessat, SYS_faccessat2, SYS_readlink, SYS_clock_gettime, SYS_gettimeofday, SYS_time,
    SYS_getpid, SYS_getppid, SYS_gettid, SYS_poll, SYS_madvise, SYS_futex, SYS_rt_sigaction,
    SYS_brk, SYS_mmap};
#define RRV_NBUFFERED (int)(sizeof buffered_numbers / sizeof buffered_numbers[0])

static int is_buffered_number(int64_t nr) {
  for (int i = 0; i < RRV_NBUFFERED; i++)
    if (buffered_numbers[i] == nr) return 1;
  return 0;
}

/* tracee_filter, with the buffered numbers allowed at the untraced instruction (its ip as
 * seccomp sees it: after the instruction). Returns the filter's length. */
static int syscallbuf_filter(struct sock_filter *f) {
  int n = 0;
  const int head = sizeof tracee_filter / sizeof tracee_filter[0] - 1;  /* all but RET TRACE */
  memcpy(f, tracee_filter, head * sizeof *f);
  n = head;
  uint64_t ip = RRV_UNTRACED_SYSCALL + 2;
  f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                        offsetof(struct seccomp_data, instruction_pointer));
  f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)ip, 0,
                                        RRV_NBUFFERED + 3);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                        offsetof(struct seccomp_data, instruction_pointer) + 4);
  f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(ip >> 32), 0,
                                        RRV_NBUFFERED + 1);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
  for (int i = 0; i < RRV_NBUFFERED; i++)
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, buffered_numbers[i],
                                          RRV_NBUFFERED - i, 0);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE);
  f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  return n;
}

/* Landlock (linux/landlock.h; the installed headers may predate the parts used here). */
struct rrv_landlock_ruleset_attr { uint64_t handled_access_fs, handled_access_net, scoped; };
#define RRV_SYS_landlock_create_ruleset 444
#define RRV_SYS_landlock_restrict_self 446
#define RRV_LANDLOCK_CREATE_RULESET_VERSION 1

/* A replayed process must touch nothing of the verifying machine, even through a syscall
 * that slipped past the tracer's checks: it holds no descriptor of the verifier but
 * /dev/null on 0-2 (everything else is closed at its exec), has its own network namespace
 * (only a loopback, down) and IPC namespace when the verifier may create them (EPERM without
 * CAP_SYS_ADMIN: then Landlock alone stands), and a Landlock
 * domain that handles every filesystem right, TCP bind/connect, abstract unix sockets and
 * signals, with no rule granting any: no file can be opened, executed, created or removed.
 * Returns what failed, or NULL. */
static const char *enter_replay_sandbox(void) {
  int fd = open("/dev/null", O_RDWR);
  if (fd < 0) return "open /dev/null";
  for (int i = 0; i < 3; i++) dup2(fd, i);
  if (fd > 2) close(fd);
  if (syscall(SYS_close_range, 3, ~0u, CLOSE_RANGE_CLOEXEC) < 0) return "close_range";
  if (setpgid(0, 0) < 0) return "setpgid";     /* the terminal's signals stay away */
  if (chdir("/") < 0) return "chdir /";
  if (unshare(CLONE_NEWNET | CLONE_NEWIPC) < 0 && errno != EPERM) return "unshare";
  long abi = syscall(RRV_SYS_landlock_create_ruleset, NULL, 0,
                     RRV_LANDLOCK_CREATE_RULESET_VERSION);
  if (abi < 1) return "Landlock (this kernel cannot confine a replayed process)";
  struct rrv_landlock_ruleset_attr attr = {.handled_access_fs = (1ull << 13) - 1};
  size_t size = sizeof attr.handled_access_fs;
  if (abi >= 2) attr.handled_access_fs |= 1ull << 13;  /* REFER */
  if (abi >= 3) attr.handled_access_fs |= 1ull << 14;  /* TRUNCATE */
  if (abi >= 5) attr.handled_access_fs |= 1ull << 15;  /* IOCTL_DEV */
  if (abi >= 4) {
    attr.handled_access_net = 3;                        /* BIND_TCP, CONNECT_TCP */
    size = 2 * sizeof(uint64_t);
  }
  if (abi >= 6) {
    attr.scoped = 3;                                    /* ABSTRACT_UNIX_SOCKET, SIGNAL */
    size = sizeof attr;
  }
  int ruleset = syscall(RRV_SYS_landlock_create_ruleset, &attr, size, 0);
  if (ruleset < 0) return "landlock_create_ruleset";
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return "prctl(PR_SET_NO_NEW_PRIVS)";
  if (syscall(RRV_SYS_landlock_restrict_self, ruleset, 0) < 0) return "landlock_restrict_self";
  close(ruleset);
  return NULL;
}

static void child_setup_and_exec(const struct rrv_spawn *s, int errpipe, int go) {
  struct sock_filter with_syscallbuf[64];
  struct sock_fprog prog = {.len = sizeof tracee_filter / sizeof tracee_filter[0],
                            .filter = tracee_filter};
  if (s->syscallbuf && !s->sandbox) {
    prog.len = syscallbuf_filter(with_syscallbuf);
    prog.filter = with_syscallbuf;
  }
  const char *what = "signal dispositions";
  /* Every recording and replay starts from the same signal state: default dispositions and
   * an empty mask (an inherited SIG_IGN, e.g. Python's SIGPIPE, would otherwise leak in). */
  for (int sig = 1; sig < 65; sig++)
    if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, NULL) < 0) goto fail;
  what = "personality";
  if (personality(ADDR_NO_RANDOMIZE) < 0) goto fail;
  what = "prctl(PR_SET_TSC)";
  if (prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0) < 0) goto fail;
  what = "setrlimit";
  for (int i = 0; i < s->nrlimits; i++) {
    struct rlimit rl = {s->rlimits[i].cur, s->rlimits[i].max};
    if (setrlimit(s->rlimits[i].resource, &rl) < 0) goto fail;
  }
  what = "chdir";
  if (s->cwd && chdir(s->cwd) < 0) goto fail;
  if (s->sandbox && (what = enter_replay_sandbox())) goto fail;
  what = "waiting for the tracer";
  char g;
  if (read(go, &g, 1) != 1) goto fail;
  raise(SIGSTOP);
  what = "prctl(PR_SET_NO_NEW_PRIVS)";
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) goto fail;
  what = "seccomp";
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) goto fail;
  if (s->exec_fd >= 0)
    syscall(SYS_execveat, s->exec_fd, "", s->argv, s->envp, AT_EMPTY_PATH);
  else
    execve(s->path, s->argv, s->envp);
  what = "execve";
fail:;
  char msg[256];
  int n = snprintf(msg, sizeof msg, "%s: %s", what, strerror(errno));
  if (write(errpipe, msg, n) < 0) { /* nothing more to do */ }
  _exit(127);
}

static int pin_to_cpu(int cpu) {
  if (cpu < 0) return 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set);
}

/* Start a tracee stopped right before its execve, attached with PTRACE_SEIZE (so that a
 * job-control stop can be reported as one and left in place, PTRACE_LISTEN) and our options.
 * The child waits on `go` until it is attached, then stops itself with SIGSTOP.
 * Returns its pid, or -1 with a message in err. */
int rrv_spawn(const struct rrv_spawn *s, char *err, size_t errlen) {
  int report[2], go[2];
  if (pipe2(report, O_CLOEXEC) < 0) {
    snprintf(err, errlen, "pipe: %s", strerror(errno));
    return -1;
  }
  if (pipe2(go, O_CLOEXEC) < 0) {
    snprintf(err, errlen, "pipe: %s", strerror(errno));
    close(report[0]);
    close(report[1]);
    return -1;
  }
  pid_t pid = -1;
  if (pin_to_cpu(s->cpu) < 0) {
    snprintf(err, errlen, "cannot pin to CPU %d: %s", s->cpu, strerror(errno));
    goto out;
  }
  pid = fork();
  if (pid < 0) {
    snprintf(err, errlen, "fork: %s", strerror(errno));
    goto out;
  }
  if (pid == 0) {
    close(report[0]);
    close(go[1]);
    child_setup_and_exec(s, report[1], go[0]);
  }
  close(report[1]);
  close(go[0]);
  report[1] = go[0] = -1;
  int status = 0;
  int seized = ptrace(PTRACE_SEIZE, pid, 0, RRV_PTRACE_OPTIONS) == 0;
  int seize_errno = errno;
  if (seized && write(go[1], "g", 1) == 1 && rrv_wait(pid, &status) == 0 &&
      WIFSTOPPED(status) && WSTOPSIG(status) == SIGSTOP && !(status >> 16))
    goto out;
  char msg[256] = "";
  ssize_t n = read(report[0], msg, sizeof msg - 1);
  msg[n > 0 ? n : 0] = 0;
  if (!msg[0] && !seized) snprintf(msg, sizeof msg, "PTRACE_SEIZE: %s", strerror(seize_errno));
  snprintf(err, errlen, "tracee setup failed: %s", msg[0] ? msg : "it did not stop");
  rrv_kill(pid);
  pid = -1;
out:
  for (int i = 0; i < 2; i++) {
    if (report[i] >= 0) close(report[i]);
    if (go[i] >= 0) close(go[i]);
  }
  return pid;
}

void rrv_kill(int pid) {
  if (pid <= 0) return;
  kill(pid, SIGKILL);
  int status;
  while (waitpid(pid, &status, __WALL) < 0 && errno == EINTR) {}   /* (any thread's) */
}

int rrv_wait(int pid, int *status) {
  for (;;) {
    int r = waitpid(pid, status, __WALL | __WNOTHREAD);
    if (r >= 0 || errno != EINTR) return r < 0 ? -1 : 0;
  }
}

int rrv_getregs(int pid, struct rrv_regs *regs) { return ptrace(PTRACE_GETREGS, pid, 0, regs); }

int rrv_setregs(int pid, const struct rrv_regs *regs) {
  return ptrace(PTRACE_SETREGS, pid, 0, (void *)regs);
}

/* Memory: process_vm_readv/writev first (one syscall, no page pinning); /proc/PID/mem for
 * what they refuse (read-only or PROT_NONE pages: the kernel's FOLL_FORCE path). */
static int proc_mem_fd(int pid) {
  static __thread int cached_pid = -1, cached_fd = -1;   /* per tracer thread */
  if (pid == cached_pid && cached_fd >= 0) return cached_fd;
  if (cached_fd >= 0) close(cached_fd);
  cached_fd = cached_pid = -1;
  if (pid < 0) return -1;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/mem", pid);
  cached_fd = open(path, O_RDWR | O_CLOEXEC);
  cached_pid = pid;
  return cached_fd;
}

/* After an execve the old /proc/PID/mem refers to the old address space. */
void rrv_forget_mem(void) { proc_mem_fd(-2); }

ssize_t rrv_read_mem(int pid, uint64_t addr, void *buf, size_t len) {
  struct iovec local = {buf, len}, remote = {(void *)addr, len};
  ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
  if (n == (ssize_t)len) return n;
  size_t done = n > 0 ? (size_t)n : 0;
  int fd = proc_mem_fd(pid);
  while (done < len && fd >= 0) {
    ssize_t m = pread(fd, (char *)buf + done, len - done, addr + done);
    if (m <= 0) break;
    done += m;
  }
  return done;
}

ssize_t rrv_write_mem(int pid, uint64_t addr, const void *buf, size_t len) {
  struct iovec local = {(void *)buf, len}, remote = {(void *)addr, len};
  ssize_t n = process_vm_writev(pid, &local, 1, &remote, 1, 0);
  if (n == (ssize_t)len) return n;
  size_t done = n > 0 ? (size_t)n : 0;
  int fd = proc_mem_fd(pid);
  while (done < len && fd >= 0) {
    ssize_t m = pwrite(fd, (const char *)buf + done, len - done, addr + done);
    if (m <= 0) break;
    done += m;
  }
  return done;
}

/* Read up to max iovecs of the tracee, clipped so their lengths sum to at most limit. */
int rrv_read_iovecs(int pid, uint64_t iov_addr, uint64_t iovcnt, uint64_t limit,
                    uint64_t *addrs, uint64_t *lens, int max) {
  struct { uint64_t base, len; } iov[64];
  if (iovcnt > 1024) return -1;
  int n = 0;
  for (uint64_t i = 0; i < iovcnt && limit > 0; i += 64) {
    uint64_t chunk = iovcnt - i < 64 ? iovcnt - i : 64;
    if (rrv_read_mem(pid, iov_addr + i * 16, iov, chunk * 16) != (ssize_t)(chunk * 16)) return -1;
    for (uint64_t j = 0; j < chunk && limit > 0; j++) {
      if (n == max) return -1;
      uint64_t l = iov[j].len < limit ? iov[j].len : limit;
      addrs[n] = iov[j].base;
      lens[n++] = l;
      limit -= l;
    }
  }
  return n;
}

/* Digest (and optionally copy to echo_fd) len bytes of tracee memory. */
int rrv_digest_range(int pid, uint64_t addr, uint64_t len, uint64_t *digest, int echo_fd) {
  static __thread uint8_t chunk[1 << 16];
  uint64_t h = *digest;
  while (len > 0) {
    size_t n = len < sizeof chunk ? len : sizeof chunk;
    if (rrv_read_mem(pid, addr, chunk, n) != (ssize_t)n) return -1;
    h = digest_update(h, chunk, n);
    if (echo_fd >= 0 && write(echo_fd, chunk, n) < 0) echo_fd = -1;
    addr += n;
    len -= n;
  }
  *digest = h;
  return 0;
}

int rrv_digest_iovecs(int pid, uint64_t iov_addr, uint64_t iovcnt, uint64_t total,
                      uint64_t *digest, int echo_fd) {
  uint64_t addrs[1024], lens[1024];
  int n = rrv_read_iovecs(pid, iov_addr, iovcnt, total, addrs, lens, 1024);
  if (n < 0) return -1;
  for (int i = 0; i < n; i++)
    if (rrv_digest_range(pid, addrs[i], lens[i], digest, echo_fd) < 0) return -1;
  return 0;
}

uint64_t arg_of(const struct rrv_regs *regs, int i) {
  switch (i) {
    case 0: return regs->rdi;
    case 1: return regs->rsi;
    case 2: return regs->rdx;
    case 3: return regs->r10;
    case 4: return regs->r8;
    default: return regs->r9;
  }
}

int rrv_sends_data(const struct rrv_syscall_spec *spec) {
  return spec->has_digest || spec->irregular == RRV_IRR_IOV_DIGEST ||
         spec->irregular == RRV_IRR_MSG_DIGEST;
}

/* A polynomial hash over GF(2^61 - 1), which composes: the hash of a||b is
 * hash(a) * B^len(b) + hash(b). Pipe I/O is hashed with it, so the cross-process check can
 * compare what one process wrote with what another read in other-sized pieces
 * (replayer/crossprocess.py does the composing). */
#define RRV_POLY_P ((1ull << 61) - 1)
#define RRV_POLY_B 1000003ull

uint64_t rrv_poly_hash(uint64_t h, const uint8_t *data, size_t len) {
  for (size_t i = 0; i < len; i++) {
    unsigned __int128 x = (unsigned __int128)h * RRV_POLY_B + data[i];
    uint64_t lo = (uint64_t)(x & RRV_POLY_P), hi = (uint64_t)(x >> 61);
    h = lo + hi;
    if (h >= RRV_POLY_P) h -= RRV_POLY_P;
  }
  return h;
}

/* The hash of len bytes of the tracee at addr; of `total` bytes of its iovecs. -1 if
 * unreadable. */
static int poly_range(int pid, uint64_t addr, uint64_t len, uint64_t *h) {
  static __thread uint8_t buf[1 << 16];
  for (uint64_t done = 0; done < len;) {
    size_t n = len - done < sizeof buf ? len - done : sizeof buf;
    if (rrv_read_mem(pid, addr + done, buf, n) != (ssize_t)n) return -1;
    *h = rrv_poly_hash(*h, buf, n);
    done += n;
  }
  return 0;
}

static int poly_iovecs(int pid, uint64_t iov, uint64_t cnt, uint64_t total, uint64_t *h) {
  uint64_t addrs[1024], lens[1024];
  int n = rrv_read_iovecs(pid, iov, cnt, total, addrs, lens, 1024);
  if (n < 0) return -1;
  for (int i = 0; i < n; i++)
    if (poly_range(pid, addrs[i], lens[i], h)) return -1;
  return 0;
}

/* The hash of the bytes read/readv/write/writev moved (result of them), from the tracee's
 * buffers: in replay, where the fd is emulated, the same function checks them. */
int rrv_pipe_io_hash(int pid, int64_t nr, const struct rrv_regs *a, int64_t result,
                     uint64_t *h) {
  *h = 0;
  return nr == SYS_read || nr == SYS_write ? poly_range(pid, a->rsi, result, h)
                                           : poly_iovecs(pid, a->rsi, a->rdx, result, h);
}

/* The inode of the pipe fd is, or 0 if it is not a pipe (a FIFO in the filesystem is not
 * one here: its other end may be outside the recording). */
static uint64_t pipe_of(int pid, int fd) {
  char link[64], target[64];
  snprintf(link, sizeof link, "/proc/%d/fd/%d", pid, fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n <= 0) return 0;
  target[n] = 0;
  unsigned long long ino;
  return sscanf(target, "pipe:[%llu]", &ino) == 1 ? ino : 0;
}

/* What a syscall that returned `result` moved through pipes: up to two struct rrv_pipe_io.
 * read/readv/write/writev are hashed (the bytes they moved); splice, tee and sendfile only
 * make a pipe untracked. Returns how many, or -1 if the data was unreadable. */
static int pipe_io_of(int pid, int64_t nr, const struct rrv_regs *a, int64_t result,
                      struct rrv_pipe_io io[2]) {
  int n = 0;
  memset(io, 0, 2 * sizeof *io);
  if (result <= 0) return 0;
  if (nr == SYS_read || nr == SYS_write || nr == SYS_readv || nr == SYS_writev) {
    uint64_t pipe = pipe_of(pid, (int)a->rdi);
    if (!pipe) return 0;
    io[0].pipe = pipe;
    io[0].direction = nr == SYS_read || nr == SYS_readv ? RRV_PIPE_READ : RRV_PIPE_WRITE;
    return rrv_pipe_io_hash(pid, nr, a, result, &io[0].hash) < 0 ? -1 : 1;
  }
  int fds[2] = {-1, -1};
  if (nr == SYS_splice) fds[0] = a->rdi, fds[1] = a->rdx;
  else if (nr == SYS_tee || nr == SYS_sendfile || nr == SYS_copy_file_range)
    fds[0] = a->rdi, fds[1] = nr == SYS_copy_file_range ? a->rdx : a->rsi;
  for (int i = 0; i < 2; i++) {
    uint64_t pipe = fds[i] >= 0 ? pipe_of(pid, fds[i]) : 0;
    if (pipe) {
      io[n].pipe = pipe;
      io[n++].direction = RRV_PIPE_UNTRACKED;
    }
  }
  return n;
}

/* Digest of the data a write-family syscall sends (0 if none, or unreadable: the same in
 * recording and replay). echo_fd >= 0 also copies the data there (replay --echo). */
uint64_t rrv_sent_digest(int pid, const struct rrv_syscall_spec *spec, const struct rrv_regs *a,
                         int64_t result, int echo_fd) {
  uint64_t d = 0;
  int rc = -1;
  if (result <= 0) return 0;
  if (spec->has_digest) {
    rc = rrv_digest_range(pid, arg_of(a, spec->digest.arg), result, &d, echo_fd);
  } else if (spec->irregular == RRV_IRR_IOV_DIGEST) {
    rc = rrv_digest_iovecs(pid, a->rsi, a->rdx, result, &d, echo_fd);
  } else if (spec->irregular == RRV_IRR_MSG_DIGEST) {
    struct kernel_msghdr msg;
    if (rrv_read_mem(pid, a->rsi, &msg, sizeof msg) == sizeof msg)
      rc = rrv_digest_iovecs(pid, msg.iov, msg.iovlen, result, &d, -1);
  }
  return rc < 0 ? 0 : d;
}

/* Run the syscall the tracee stands at (its seccomp stop, or a syscall-entry stop, which the
 * seccomp stop then follows) to its exit stop, through the exec event for an execve. Returns
 * 0 with the wait status (a death inside is not an error). */
int rrv_step_to_syscall_exit(int pid, int *status) {
  for (;;) {
    if (ptrace(PTRACE_SYSCALL, pid, 0, 0) < 0) return -1;
    if (rrv_wait(pid, status) < 0) return -1;
    if (!WIFSTOPPED(*status) || RRV_SYSCALL_EXIT_STOP(*status)) return 0;
    if (RRV_SECCOMP_STOP(*status)) continue;
    if (RRV_EXEC_STOP(*status)) {
      rrv_forget_mem();
      continue;
    }
    errno = EPROTO;
    return -1;
  }
}

/* A tracee at a syscall's seccomp stop, made ready for a checkpoint before that syscall runs
 * (the final checkpoint before an exit): the syscall is skipped, and at the skip's exit stop
 * the tracee is set to issue it again when resumed (ip back on its 2-byte `syscall`, rax the
 * number, orig_rax -1), a state a checkpoint can hold and a restore can resume from. Returns
 * 0, -1 (errno), or -2 if the tracee died (*status). */
int rrv_park_before_syscall(int pid, int *status) {
  struct rrv_regs entry, parked;
  if (rrv_getregs(pid, &entry) < 0) return -1;
  parked = entry;
  parked.orig_rax = -1;
  if (rrv_setregs(pid, &parked) < 0) return -1;
  if (rrv_step_to_syscall_exit(pid, status) < 0) return -1;
  if (!WIFSTOPPED(*status)) return -2;
  parked.rip = entry.rip - 2;
  parked.rax = entry.orig_rax;
  return rrv_setregs(pid, &parked);
}

/* Make a tracee at a syscall-exit stop run the rdtsc at `rip` (with rdtsc trapping on, it
 * faults: #GP, which leaves the kernel's per-thread trap state as a recorded rdtsc left it) and
 * stop at that SIGSEGV, which the next resume discards. 0, or -1. */
int rrv_trap_rdtsc_at(int pid, uint64_t rip) {
  struct rrv_regs regs;
  int status;
  if (rrv_getregs(pid, &regs) < 0) return -1;
  regs.rip = rip;
  if (rrv_setregs(pid, &regs) < 0 || ptrace(PTRACE_CONT, pid, 0, 0) < 0 ||
      rrv_wait(pid, &status) < 0)
    return -1;
  if (!WIFSTOPPED(status) || WSTOPSIG(status) != SIGSEGV || (status >> 16)) {
    errno = EPROTO;
    return -1;
  }
  return 0;
}

/* Where the kernel put a signal frame: after delivering `sig` with PTRACE_SINGLESTEP, the
 * tracee stops in its handler (at or after its first instruction) with rdi = sig, rsi =
 * &frame->info, rdx = &frame->uc, rsp = frame (struct rt_sigframe: return address, ucontext,
 * siginfo: 440 bytes). The frame's FPU area, which its sigcontext points to, says its own
 * size. Returns the number of ranges (0: no frame: the signal had no handler; else 2, the
 * frame and its FPU area). The FPU area's contents depend on what the CPU considers in use
 * (XINUSE), which the kernel's context switches change at random: recording captures the
 * frame and replay writes it back. */
int rrv_signal_frame(int pid, const struct rrv_regs *regs, int sig, uint64_t ranges[2][2]) {
  if (regs->rdi != (uint64_t)sig || regs->rsi != regs->rsp + 312 || regs->rdx != regs->rsp + 8)
    return 0;
  uint64_t fpstate = 0;
  struct { uint32_t magic1, extended_size; } sw = {0, 0};
  ranges[0][0] = regs->rsp;
  ranges[0][1] = 440;
  if (rrv_read_mem(pid, regs->rsp + 232, &fpstate, 8) != 8 || !fpstate) return 1;
  rrv_read_mem(pid, fpstate + 464, &sw, sizeof sw);
  ranges[1][0] = fpstate;
  ranges[1][1] = sw.magic1 == 0x46505853 && sw.extended_size >= 512 && sw.extended_size <= 65536
                     ? sw.extended_size : 512;      /* FP_XSTATE_MAGIC1; else legacy FXSAVE */
  return 2;
}

/* The signals pid handles (SigCgt), ignores (SigIgn) and blocks (SigBlk): /proc/PID/status. */
int rrv_signal_sets(int pid, uint64_t *caught, uint64_t *ignored, uint64_t *blocked) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "re");
  if (!f) return -1;
  int found = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long long v;
    if (sscanf(line, "SigCgt: %llx", &v) == 1) *caught = v, found |= 1;
    if (sscanf(line, "SigIgn: %llx", &v) == 1) *ignored = v, found |= 2;
    if (sscanf(line, "SigBlk: %llx", &v) == 1) *blocked = v, found |= 4;
  }
  fclose(f);
  return found == 7 ? 0 : -1;
}

int rrv_get_sigmask(int pid, uint64_t *mask) {
  return ptrace(PTRACE_GETSIGMASK, pid, (void *)sizeof *mask, mask);
}

int rrv_set_sigmask(int pid, uint64_t mask) {
  return ptrace(PTRACE_SETSIGMASK, pid, (void *)sizeof mask, &mask);
}

/* FPU/vector state digest. The kernel's ptrace XSTATE view fills components the task holds in
 * their init state with init values, so hashing component contents (never the XSTATE_BV
 * header, which tracks what the CPU happens to consider in use) is deterministic. Hashed: x87
 * control/status/tag and ST0-7, MXCSR, XMM0-15, and the AVX/AVX-512/PKRU components at their
 * standard-format offsets (CPUID leaf 0xD). FOP/FIP/FDP are not: CPUs may leave them stale. */
static struct { uint32_t offset, size; } xcomp[10];
static size_t xstate_needed = 576; /* legacy area + XSAVE header; grows with the components */

static void read_xstate_layout(void) {
  uint32_t r[4];
  rrv_cpuid(0xd, 0, r);
  uint64_t xcr0_mask = r[0] | ((uint64_t)r[3] << 32);
  for (int i = 2; i < 10; i++) {
    if (i == 3 || i == 4 || i == 8) continue; /* MPX and PT: not user state we compare */
    if (!(xcr0_mask & (1ull << i))) continue;
    rrv_cpuid(0xd, i, r);
    xcomp[i].size = r[0];
    xcomp[i].offset = r[1];
    if (r[0] + r[1] > xstate_needed) xstate_needed = r[0] + r[1];
  }
}

static void init_xstate_layout(void) {   /* once, whichever tracer thread comes first */
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, read_xstate_layout);
}

uint64_t rrv_fpu_digest_of(const uint8_t *area, size_t len) {
  init_xstate_layout();
  uint64_t h = 0x510e527fade682d1ull;
  if (len < 416) return 0;
  h = digest_update(h, area + 0, 6);     /* FCW, FSW, FTW */
  h = digest_update(h, area + 24, 4);    /* MXCSR */
  h = digest_update(h, area + 32, 384);  /* ST0-7, XMM0-15 */
  for (int i = 2; i < 10; i++)
    if (xcomp[i].size && xcomp[i].offset + xcomp[i].size <= len)
      h = digest_update(h, area + xcomp[i].offset, xcomp[i].size);
  return h;
}

int rrv_fpu_digest(int pid, uint64_t *out) {
  static __thread uint8_t area[16384] __attribute__((aligned(64)));
  init_xstate_layout();
  /* Ask only for the components we hash: the kernel then copies ~2.7 KB, not the whole
   * (AMX-sized) area. */
  struct iovec iov = {area, xstate_needed};
  if (ptrace(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &iov) < 0) return -1;
  *out = rrv_fpu_digest_of(area, iov.iov_len);
  return 0;
}

/* The whole XSAVE area (checkpoints). Returns its length or -1. */
int rrv_get_xstate(int pid, uint8_t *buf, size_t cap) {
  struct iovec iov = {buf, cap};
  if (ptrace(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &iov) < 0) return -1;
  return (int)iov.iov_len;
}

int rrv_set_xstate(int pid, const uint8_t *buf, size_t len) {
  struct iovec iov = {(void *)buf, len};
  return ptrace(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, &iov);
}

/* From rrv_spawn's stop to the exit stop of the tracee's execve: the first instruction of
 * the new image has not run yet. */
int rrv_run_initial_exec(int pid, char *err, size_t errlen) {
  int status = 0;
  struct rrv_regs regs;
  if (ptrace(PTRACE_CONT, pid, 0, 0) < 0 || rrv_wait(pid, &status) < 0 ||
      !RRV_SECCOMP_STOP(status)) {
    snprintf(err, errlen, "the tracee did not reach its execve (status 0x%x)", status);
    return -1;
  }
  if (rrv_step_to_syscall_exit(pid, &status) < 0 || !WIFSTOPPED(status)) {
    snprintf(err, errlen, "the tracee died in its execve (status 0x%x)", status);
    return -1;
  }
  rrv_forget_mem();
  if (rrv_getregs(pid, &regs) < 0 || (int64_t)regs.rax < 0) {
    snprintf(err, errlen, "execve failed: %s", strerror(-(int64_t)regs.rax));
    return -1;
  }
  return 0;
}

/* One syscall injected through `gadget`, from registers `base`: *result its return value.
 * Returns 0, -1 (err says why), -2 (the tracee died: *result is its wait status) or -3 (what
 * arrived at the stop is not the syscall injected). */
static int inject_one(int pid, uint64_t gadget, const struct rrv_regs *base, int64_t nr,
                      const uint64_t a[6], int64_t *result, char *err, size_t errlen) {
  struct rrv_regs regs = *base;
  int status;
  regs.rip = gadget;
  regs.rax = nr;
  regs.orig_rax = -1;
  regs.rdi = a[0];
  regs.rsi = a[1];
  regs.rdx = a[2];
  regs.r10 = a[3];
  regs.r8 = a[4];
  regs.r9 = a[5];
  if (rrv_setregs(pid, &regs) < 0) goto sys_fail;
  if (ptrace(PTRACE_CONT, pid, 0, 0) < 0 || rrv_wait(pid, &status) < 0) goto sys_fail;
  if (WIFEXITED(status) || WIFSIGNALED(status)) goto died;
  if (!RRV_SECCOMP_STOP(status)) {
    snprintf(err, errlen, "injected syscall %lld: unexpected stop (status 0x%x)",
             (long long)nr, status);
    return -1;
  }
  /* What arrives must be exactly what we injected, from the `syscall` at the gadget: the
   * gadget lies in memory a trace may have written, and the filter stopped the syscall
   * before it ran, so anything else is refused here, never executed. */
  struct rrv_regs arrived;
  if (rrv_getregs(pid, &arrived) < 0) goto sys_fail;
  if ((int64_t)arrived.orig_rax != nr || arrived.rip != gadget + 2 || arrived.rdi != a[0] ||
      arrived.rsi != a[1] || arrived.rdx != a[2] || arrived.r10 != a[3] || arrived.r8 != a[4] ||
      arrived.r9 != a[5]) {
    snprintf(err, errlen, "injected syscall %lld through 0x%llx arrived as syscall %lld from "
             "0x%llx: the code at the injection site is not a plain `syscall`",
             (long long)nr, (unsigned long long)gadget, (long long)arrived.orig_rax,
             (unsigned long long)arrived.rip - 2);
    return -3;
  }
  if (ptrace(PTRACE_SYSCALL, pid, 0, 0) < 0 || rrv_wait(pid, &status) < 0) goto sys_fail;
  if (WIFEXITED(status) || WIFSIGNALED(status)) goto died;
  if (!RRV_SYSCALL_EXIT_STOP(status)) {
    snprintf(err, errlen, "injected syscall %lld: no exit stop (status 0x%x)",
             (long long)nr, status);
    return -1;
  }
  if (rrv_getregs(pid, &regs) < 0) goto sys_fail;
  *result = (int64_t)regs.rax;
  return 0;
sys_fail:
  snprintf(err, errlen, "injected syscall %lld: %s", (long long)nr, strerror(errno));
  return -1;
died: /* killed from outside meanwhile: hand its wait status to the caller */
  *result = status;
  snprintf(err, errlen, "the tracee died (wait status 0x%x)", status);
  return -2;
}

/* n syscalls injected one after another, nrs[k] with args[6 * k ...], their return values in
 * results[k]; the tracee's registers are saved before the first and put back after the last
 * (a checkpoint reads a process's signal state in one call, not one per signal). Returns 0,
 * or inject_one's failure for the first syscall that failed (results[0]: the wait status of
 * a tracee that died; the registers are then not put back). */
int rrv_inject_syscalls(int pid, uint64_t gadget, size_t n, const int64_t *nrs,
                        const uint64_t *args, int64_t *results, char *err, size_t errlen) {
  struct rrv_regs saved;
  if (rrv_getregs(pid, &saved) < 0) {
    snprintf(err, errlen, "injecting syscalls: %s", strerror(errno));
    return -1;
  }
  for (size_t k = 0; k < n; k++) {
    int rc = inject_one(pid, gadget, &saved, nrs[k], args + 6 * k, &results[k], err, errlen);
    if (rc == -2) results[0] = results[k];
    if (rc < 0) return rc;
  }
  if (rrv_setregs(pid, &saved) < 0) {
    snprintf(err, errlen, "injecting syscalls: %s", strerror(errno));
    return -1;
  }
  return 0;
}

/* Make the tracee run one syscall for us: it must be at a syscall-exit stop (or the exec stop
 * after rrv_run_initial_exec) with no signal pending. `gadget` is the address of a `syscall`
 * instruction in its address space. Its registers are restored afterwards. Returns 0; -1 on a
 * ptrace failure; -2 if the tracee died (*result: its wait status); -3 if the syscall that
 * arrived at the stop was not the one injected (it was not run; the tracee is left there). */
int rrv_inject_syscall(int pid, uint64_t gadget, int64_t nr, const uint64_t a[6],
                       int64_t *result, char *err, size_t errlen) {
  return rrv_inject_syscalls(pid, gadget, 1, &nr, a, result, err, errlen);
}

/* Finish a trapped rdtsc/rdtscp for the tracee: its result in edx:eax (and TSC_AUX in ecx),
 * ip past the instruction. */
int rrv_complete_rdtsc(int pid, const struct rrv_regs *regs, uint64_t tsc, uint64_t aux,
                       int rdtscp) {
  struct rrv_regs next = *regs;
  next.rax = (uint32_t)tsc;
  next.rdx = tsc >> 32;
  if (rdtscp) next.rcx = (uint32_t)aux;
  next.rip += rdtscp ? 3 : 2;
  return rrv_setregs(pid, &next);
}

int rrv_is_rdtsc(int pid, uint64_t rip, int *is_rdtscp) {
  uint8_t insn[3] = {0};
  if (rrv_read_mem(pid, rip, insn, 3) < 2) return 0;
  if (insn[0] == 0x0f && insn[1] == 0x31) {
    *is_rdtscp = 0;
    return 1;
  }
  if (insn[0] == 0x0f && insn[1] == 0x01 && insn[2] == 0xf9) {
    *is_rdtscp = 1;
    return 1;
  }
  return 0;
}

/* The floor a recorder cannot beat: a tracer that does nothing but take the stops. The tracee
 * is a child calling getppid n times; emulate=1 takes one seccomp stop per call and skips the
 * syscall, emulate=0 takes the entry (seccomp) and exit stops like the recorder does. Returns
 * elapsed nanoseconds or -1. */
long rrv_bench_ptrace_floor(long n, int cpu, int emulate) {
  pid_t pid = fork();
  if (pid == 0) {
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    struct sock_fprog prog = {.len = 4, .filter = filter};
    pin_to_cpu(cpu);
    ptrace(PTRACE_TRACEME, 0, 0, 0);
    raise(SIGSTOP);
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
    for (long i = 0; i < n; i++) syscall(SYS_getppid);
    _exit(0);
  }
  int status;
  pin_to_cpu(cpu);
  rrv_wait(pid, &status);
  ptrace(PTRACE_SETOPTIONS, pid, 0, RRV_PTRACE_OPTIONS);
  uint64_t t0 = rrv_now_ns();
  ptrace(PTRACE_CONT, pid, 0, 0);
  struct rrv_regs regs;
  for (;;) {
    if (rrv_wait(pid, &status) < 0) return -1;
    if (WIFEXITED(status) || WIFSIGNALED(status)) break;
    if (RRV_SECCOMP_STOP(status)) {
      rrv_getregs(pid, &regs);
      if (emulate) {
        regs.orig_rax = -1;
        regs.rax = 1;
        rrv_setregs(pid, &regs);
        ptrace(PTRACE_CONT, pid, 0, 0);
      } else {
        ptrace(PTRACE_SYSCALL, pid, 0, 0);
        rrv_wait(pid, &status);
        rrv_getregs(pid, &regs);
        ptrace(PTRACE_CONT, pid, 0, 0);
      }
      continue;
    }
    ptrace(PTRACE_CONT, pid, 0, 0);
  }
  return (long)(rrv_now_ns() - t0);
}

/* The recorder's syscall page, at the same address in every recorded image (the tracee filter
 * knows it before exec): an untraced `syscall; ret` (RRV_UNTRACED_SYSCALL), a traced one
 * (RRV_TRACED_SYSCALL), int3 elsewhere. Mapped into a fresh image by an injected mmap; a
 * checkpoint then holds it like any anonymous page. Returns 0, or -1 with err set. */
int rrv_map_syscall_page(int pid, uint64_t gadget, char *err, size_t errlen) {
  uint8_t page[4096];
  memset(page, 0xcc, sizeof page);
  memcpy(page + (RRV_UNTRACED_SYSCALL - RRV_SYSCALL_PAGE), "\x0f\x05\xc3", 3);
  memcpy(page + (RRV_TRACED_SYSCALL - RRV_SYSCALL_PAGE), "\x0f\x05\xc3", 3);
  const uint64_t args[6] = {RRV_SYSCALL_PAGE, sizeof page, PROT_READ | PROT_EXEC,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, (uint64_t)-1, 0};
  int64_t result = 0;
  int rc = rrv_inject_syscall(pid, gadget, SYS_mmap, args, &result, err, errlen);
  if (rc < 0) return -1;
  if (rc == 0 && result != (int64_t)RRV_SYSCALL_PAGE) {
    snprintf(err, errlen, "cannot map the syscall page at 0x%llx: %s",
             (unsigned long long)RRV_SYSCALL_PAGE,
             result < 0 ? strerror((int)-result) : "mapped elsewhere");
    return -1;
  }
  if (rc != 0) {
    snprintf(err, errlen, "the tracee stopped otherwise while the syscall page was mapped");
    return -1;
  }
  if (rrv_write_mem(pid, RRV_SYSCALL_PAGE, page, sizeof page) != sizeof page) {
    snprintf(err, errlen, "cannot write the syscall page: %s", strerror(errno));
    return -1;
  }
  return 0;
}
