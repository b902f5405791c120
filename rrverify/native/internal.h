/* internal.h: helpers shared by the native recorder and replayer (not seen by cffi). */
#ifndef RRV_INTERNAL_H
#define RRV_INTERNAL_H
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include "rrv.h"

/* Python callbacks (cffi extern "Python"). */
int rrv_py_blob_put(void *handle, const uint8_t *data, size_t len, uint8_t *digest_out);
int rrv_py_blob_get(void *handle, const uint8_t *digest, const uint8_t **data, size_t *len);
int rrv_py_file_mapped(void *handle, int pid, int fd, uint64_t offset, uint64_t length,
                       uint64_t *index_out);
int rrv_py_file_fd(void *handle, uint64_t index, uint64_t addr, uint64_t length,
                   uint64_t offset, int64_t *fd);

#define RRV_PTRACE_OPTIONS (PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACESECCOMP | \
                            PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL | PTRACE_O_TRACEFORK | \
                            PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE)

int rrv_wait(int pid, int *status);
ssize_t rrv_read_mem(int pid, uint64_t addr, void *buf, size_t len);
ssize_t rrv_write_mem(int pid, uint64_t addr, const void *buf, size_t len);
int rrv_read_iovecs(int pid, uint64_t iov_addr, uint64_t iovcnt, uint64_t limit,
                    uint64_t *addrs, uint64_t *lens, int max);
int rrv_digest_iovecs(int pid, uint64_t iov_addr, uint64_t iovcnt, uint64_t total,
                      uint64_t *digest, int echo_fd);
int rrv_digest_range(int pid, uint64_t addr, uint64_t len, uint64_t *digest, int echo_fd);
uint64_t rrv_now_ns(void);
int rrv_signal_sets(int pid, uint64_t *caught, uint64_t *ignored, uint64_t *blocked);
int rrv_pipe_io_hash(int pid, int64_t nr, const struct rrv_regs *a, int64_t result, uint64_t *h);
int rrv_is_rdtsc(int pid, uint64_t rip, int *is_rdtscp);
int rrv_signal_frame(int pid, const struct rrv_regs *regs, int sig, uint64_t ranges[2][2]);
/* The stop that ends a signal delivery made with PTRACE_SINGLESTEP: SIGTRAP, reported by the
 * kernel right after it wrote a handler's frame (si_code SIGTRAP: a ptrace notification), or
 * after one instruction when there was no handler (si_code TRAP_TRACE). */
#define RRV_DELIVERY_STEP(status, si) \
  (WIFSTOPPED(status) && WSTOPSIG(status) == SIGTRAP && !((status) >> 16) && \
   ((si)->si_code == SIGTRAP || (si)->si_code == 2 /* TRAP_TRACE */))

struct kernel_msghdr {
  uint64_t name, namelen, iov, iovlen, control, controllen;
  int32_t flags, pad;
};

#define RRV_SECCOMP_STOP(status) (((status) >> 8) == (SIGTRAP | (PTRACE_EVENT_SECCOMP << 8)))
#define RRV_EXEC_STOP(status) (((status) >> 8) == (SIGTRAP | (PTRACE_EVENT_EXEC << 8)))
#define RRV_SYSCALL_EXIT_STOP(status) (WIFSTOPPED(status) && WSTOPSIG(status) == (SIGTRAP | 0x80))
/* A job-control stop (WSTOPSIG: the stop signal), or its end after SIGCONT (SIGTRAP): only a
 * PTRACE_SEIZE'd tracee reports these, as PTRACE_EVENT_STOP. */
#define RRV_GROUP_STOP(status) (WIFSTOPPED(status) && ((status) >> 16) == PTRACE_EVENT_STOP)
/* CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME */
#define RRV_NAMESPACE_FLAGS (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | \
                             0x20000000 | 0x40000000 | 0x00000080)
#define RRV_CLONE_VM 0x100ull
#define RRV_CLONE_VFORK 0x4000ull
#define RRV_CLONE_THREAD 0x10000ull
#define RRV_CLONE_PTRACE 0x2000ull
#define RRV_CLONE_UNTRACED 0x800000ull
#define RRV_CLONE_PIDFD 0x1000ull
#define RRV_CLONE_PARENT_SETTID 0x100000ull
#define RRV_VSYSCALL_PAGE 0xffffffffff600000ull  /* the legacy vsyscall page */
#define RRV_X32_SYSCALL_BIT 0x40000000u
#define RRV_X32_RANGE_MASK 0xfffffc00u    /* x32's numbers: 0x40000000 to 0x400003ff */
#define RRV_SYS_SECCOMP 1 /* si_code of the SIGSYS a SECCOMP_RET_TRAP raises */
/* A SIGSYS from the tracee filter: a syscall of a foreign ABI that was never run. */
#define RRV_FOREIGN_SYSCALL(sig, si) ((sig) == SIGSYS && (si)->si_code == RRV_SYS_SECCOMP)
/* A syscall's result that asks the kernel to restart it (-ERESTARTSYS, -ERESTARTNOINTR,
 * -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK): it did not complete. */
#define RRV_RESTARTING(rax) ((rax) <= -512 && (rax) >= -516 && (rax) != -515)
#define RRV_ALIGN8(n) (((n) + 7) & ~(size_t)7)
#define RRV_MAX_WRITE (1u << 31)
#define RRV_EVENT_INLINE_MAX (1u << 20) /* beyond this an event's writes go to blobs */


#endif
