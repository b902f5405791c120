"""The syscall table: every x86-64 syscall rrverify knows, declared once.

Each entry says how the syscall is recorded and replayed and which memory it writes. The C
recorder's and replayer's cases are generated from this table (recorder/gen_syscalls.py), and
`rrverify dump` formats events with it. A syscall missing from here ends a recording with a
clear message: an unknown syscall is never silently passed through.

Handling (what replay does with the syscall):
  EMULATE      not executed; the recorded result and memory writes are injected.
  EXECUTE      executed again (it shapes the address space or signal state); the result must
               equal the recorded one.
  EXECUTE_SELF executed like EXECUTE when its first argument is 0 (the calling process: what
               it changes, the process observes, e.g. RLIMIT_STACK), emulated otherwise.
  MMAP/MREMAP  executed with the recorded address forced; a file mapping becomes an anonymous
               one filled with the recorded file's contents.
  EXEC         execve: executed; the new image is then checked against the recorded one.
  EXIT         exit/exit_group: executed.
  FORK         fork, vfork, clone, clone3 (no threads): the recorder follows the child as a
               process of its own (its own event stream, from a checkpoint at its birth);
               replay emulates the call in the parent (the result is the recorded child pid).
  REFUSE       never executed, in recording either: the tracee sees -ENOSYS (rseq: the kernel
               would otherwise write into the tracee behind our back).
  UNSUPPORTED  ends the recording with `why`.

Outputs are (argument index, size) pairs; the size vocabulary is below. An output is captured
after the syscall returns successfully, whatever the bytes are: over-capturing unchanged bytes
is harmless because replay writes back exactly what was there.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import sys
from dataclasses import dataclass, field


@functools.lru_cache(maxsize=None)
def python_ptrace_names(arch: str) -> dict[int, str]:
    """python-ptrace's syscall names for `arch` ("x86_64", "i386"). Its module is a plain
    dict, but importing it runs the package's __init__, which loads python-ptrace's ctypes
    bindings, subprocess and socket: 25 ms of every recording's start-up. So the file is
    loaded by itself, unless the package is imported already."""
    name = f"ptrace.syscall.linux.{arch}"
    if name in sys.modules:
        return sys.modules[name].SYSCALL_NAMES
    spec = importlib.util.find_spec("ptrace")
    if spec is None or spec.origin is None:
        raise ImportError("python-ptrace is not installed (pip install python-ptrace)")
    root = os.path.dirname(spec.origin)
    spec = importlib.util.spec_from_file_location(
        f"rrverify._ptrace_names_{arch}", os.path.join(root, "syscall", "linux", f"{arch}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SYSCALL_NAMES


EMULATE, EXECUTE, EXECUTE_SELF, MMAP, MREMAP, EXEC, EXIT, REFUSE, UNSUPPORTED, FORK = (
    "EMULATE", "EXECUTE", "EXECUTE_SELF", "MMAP", "MREMAP", "EXEC", "EXIT", "REFUSE",
    "UNSUPPORTED", "FORK")
HANDLINGS = (EMULATE, EXECUTE, EXECUTE_SELF, MMAP, MREMAP, EXEC, EXIT, REFUSE, UNSUPPORTED, FORK)

# Irregular syscalls whose outputs depend on more than the table can say: hand-written C.
IRREGULAR = ("ioctl", "fcntl", "iov_result", "recvmsg", "prctl", "iov_digest", "msg_digest",
             "process_vm", "restart", "unshare", "recvmmsg", "msgrcv", "ipc_ctl", "clone")


@dataclass(frozen=True)
class Size:
    kind: str          # FIXED n | RESULT | ARG j | RESULT_TIMES n | ARG_TIMES j,n | DEREF_U32 j | FDSET j
    n: int = 0
    arg: int = 0


def Fixed(n): return Size("FIXED", n=n)
def Result(): return Size("RESULT")
def ArgSize(j): return Size("ARG", arg=j)
def ResultTimes(n): return Size("RESULT_TIMES", n=n)
def ArgTimes(j, n): return Size("ARG_TIMES", n=n, arg=j)
def DerefU32(j): return Size("DEREF_U32", arg=j)
def FdSet(j): return Size("FDSET", arg=j)


@dataclass(frozen=True)
class Syscall:
    name: str
    nr: int
    handling: str = EMULATE
    outputs: tuple = ()            # ((arg index, Size), ...)
    irregular: str = ""            # one of IRREGULAR: C code handles outputs/inputs
    digest: tuple = ()             # (arg, Size): data the syscall reads, digested and checked in replay
    why: str = ""                  # for UNSUPPORTED


# Numbers python-ptrace does not know yet (newer kernels).
_EXTRA_NUMBERS = {
    "timerfd_create": 283, "epoll_pwait2": 441, "mount_setattr": 442, "landlock_create_ruleset": 444,
    "landlock_add_rule": 445, "landlock_restrict_self": 446, "memfd_secret": 447,
    "process_mrelease": 448, "futex_waitv": 449, "cachestat": 451, "fchmodat2": 452,
    "map_shadow_stack": 453, "futex_wake": 454, "futex_wait": 455, "futex_requeue": 456,
    "statmount": 457, "listmount": 458, "lsm_get_self_attr": 459, "mseal": 462,
}
NUMBERS_RANGE = 512         # x86-64 syscall numbers lie below (x32 numbers are trapped)
NUMBERS = {name: nr for nr, name in python_ptrace_names("x86_64").items()
           if nr < NUMBERS_RANGE}
NUMBERS.update(_EXTRA_NUMBERS)
NAMES = {nr: name for name, nr in NUMBERS.items()}

STAT = 144          # struct stat
STATFS = 120
TIMESPEC = 16
TIMEVAL = 16
RLIMIT = 16
RUSAGE = 144
SIGSET = 8
KSIGACTION = 32
STACK_T = 24
SIGINFO = 128
UTSNAME = 390
SYSINFO = 112
TIMEX = 208
TMS = 32
ITIMERVAL = 32
EPOLL_EVENT = 12
POLLFD = 8
STATX = 256

_TABLE: dict[str, dict] = {}


def _sc(name, handling=EMULATE, *, out=(), irregular="", digest=(), why=""):
    _TABLE[name] = dict(handling=handling, outputs=tuple(out), irregular=irregular,
                        digest=tuple(digest), why=why)


# --- file I/O -------------------------------------------------------------------------
_sc("read", out=[(1, Result())])
_sc("pread64", out=[(1, Result())])
_sc("readv", irregular="iov_result")
_sc("preadv", irregular="iov_result")
_sc("preadv2", irregular="iov_result")
_sc("write", digest=(1, Result()))
_sc("pwrite64", digest=(1, Result()))
_sc("writev", irregular="iov_digest")
_sc("pwritev", irregular="iov_digest")
_sc("pwritev2", irregular="iov_digest")
for _n in ("open", "openat", "openat2", "creat", "close", "close_range", "lseek", "fsync",
           "fdatasync", "ftruncate", "truncate", "unlink", "unlinkat", "mkdir", "mkdirat",
           "rmdir", "rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat",
           "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
           "access", "faccessat", "faccessat2", "chdir", "fchdir", "umask", "dup", "dup2",
           "dup3", "flock", "fadvise64", "fallocate", "sync", "syncfs", "utime", "utimes",
           "utimensat", "futimesat", "mknod", "mknodat", "tee", "readahead", "inotify_init", "inotify_init1", "inotify_add_watch",
           "inotify_rm_watch", "memfd_create", "eventfd", "eventfd2", "timerfd_create",
           "signalfd", "signalfd4", "sync_file_range", "setxattr", "lsetxattr",
           "fsetxattr", "removexattr", "lremovexattr", "fremovexattr"):
    _sc(_n)
# The offsets they advance (when the pointer is not NULL).
_sc("sendfile", out=[(2, Fixed(8))])
_sc("copy_file_range", out=[(1, Fixed(8)), (3, Fixed(8))])
_sc("splice", out=[(1, Fixed(8)), (3, Fixed(8))])
_sc("stat", out=[(1, Fixed(STAT))])
_sc("lstat", out=[(1, Fixed(STAT))])
_sc("fstat", out=[(1, Fixed(STAT))])
_sc("newfstatat", out=[(2, Fixed(STAT))])
_sc("statx", out=[(4, Fixed(STATX))])
_sc("statfs", out=[(1, Fixed(STATFS))])
_sc("fstatfs", out=[(1, Fixed(STATFS))])
_sc("getdents64", out=[(1, Result())])
_sc("getdents", out=[(1, Result())])
_sc("readlink", out=[(1, Result())])
_sc("readlinkat", out=[(2, Result())])
_sc("getcwd", out=[(0, Result())])
_sc("getxattr", out=[(2, Result())])
_sc("lgetxattr", out=[(2, Result())])
_sc("fgetxattr", out=[(2, Result())])
_sc("listxattr", out=[(1, Result())])
_sc("llistxattr", out=[(1, Result())])
_sc("flistxattr", out=[(1, Result())])
_sc("pipe", out=[(0, Fixed(8))])
_sc("pipe2", out=[(0, Fixed(8))])
_sc("ioctl", irregular="ioctl")
_sc("fcntl", irregular="fcntl")
_sc("timerfd_settime", out=[(3, Fixed(ITIMERVAL))])
_sc("timerfd_gettime", out=[(1, Fixed(ITIMERVAL))])

# --- polling ----------------------------------------------------------------------------
_sc("poll", out=[(0, ArgTimes(1, POLLFD))])
_sc("ppoll", out=[(0, ArgTimes(1, POLLFD)), (2, Fixed(TIMESPEC))])
_sc("select", out=[(1, FdSet(0)), (2, FdSet(0)), (3, FdSet(0)), (4, Fixed(TIMEVAL))])
_sc("pselect6", out=[(1, FdSet(0)), (2, FdSet(0)), (3, FdSet(0)), (4, Fixed(TIMESPEC))])
_sc("epoll_create")
_sc("epoll_create1")
_sc("epoll_ctl")
_sc("epoll_wait", out=[(1, ResultTimes(EPOLL_EVENT))])
_sc("epoll_pwait", out=[(1, ResultTimes(EPOLL_EVENT))])
_sc("epoll_pwait2", out=[(1, ResultTimes(EPOLL_EVENT))])

# --- sockets ----------------------------------------------------------------------------
for _n in ("socket", "connect", "bind", "listen", "shutdown", "setsockopt"):
    _sc(_n)
_sc("socketpair", out=[(3, Fixed(8))])
_sc("getsockname", out=[(1, DerefU32(2)), (2, Fixed(4))])
_sc("getpeername", out=[(1, DerefU32(2)), (2, Fixed(4))])
_sc("accept", out=[(1, DerefU32(2)), (2, Fixed(4))])
_sc("accept4", out=[(1, DerefU32(2)), (2, Fixed(4))])
_sc("getsockopt", out=[(3, DerefU32(4)), (4, Fixed(4))])
_sc("sendto", digest=(1, Result()))
_sc("sendmsg", irregular="msg_digest")
_sc("recvfrom", out=[(1, Result()), (4, DerefU32(5)), (5, Fixed(4))])
_sc("recvmsg", irregular="recvmsg")

# --- memory (address space: executed in replay) -----------------------------------------
_sc("mmap", MMAP)
_sc("mremap", MREMAP)
for _n in ("munmap", "mprotect", "brk", "madvise", "mlock", "munlock", "mlockall",
           "munlockall", "msync", "pkey_mprotect", "mlock2"):
    _sc(_n, EXECUTE)
_sc("mincore", out=[(2, Size("PAGES", arg=1))])

# --- signals ----------------------------------------------------------------------------
_sc("rt_sigaction", EXECUTE)
_sc("rt_sigprocmask", EXECUTE)
_sc("sigaltstack", EXECUTE)
_sc("rt_sigreturn", EXECUTE)
_sc("rt_sigpending", out=[(0, ArgSize(1))])
_sc("kill")
_sc("tgkill")
_sc("tkill")
_sc("rt_sigsuspend")
_sc("pause")
_sc("rt_sigtimedwait", out=[(1, Fixed(SIGINFO))])
_sc("alarm")
_sc("setitimer", out=[(2, Fixed(ITIMERVAL))])
_sc("getitimer", out=[(1, Fixed(ITIMERVAL))])
_sc("rt_sigqueueinfo")
_sc("rt_tgsigqueueinfo")

# --- time -------------------------------------------------------------------------------
_sc("clock_gettime", out=[(1, Fixed(TIMESPEC))])
_sc("clock_getres", out=[(1, Fixed(TIMESPEC))])
_sc("gettimeofday", out=[(0, Fixed(TIMEVAL)), (1, Fixed(8))])
_sc("time", out=[(0, Fixed(8))])
_sc("nanosleep", out=[(1, Fixed(TIMESPEC))])
_sc("clock_nanosleep", out=[(3, Fixed(TIMESPEC))])
_sc("times", out=[(0, Fixed(TMS))])
_sc("timer_create", out=[(2, Fixed(4))])
_sc("timer_settime", out=[(3, Fixed(ITIMERVAL))])
_sc("timer_gettime", out=[(1, Fixed(ITIMERVAL))])
_sc("timer_getoverrun")
_sc("timer_delete")

# --- identity, limits, system -----------------------------------------------------------
for _n in ("getpid", "getppid", "gettid", "getuid", "geteuid", "getgid", "getegid",
           "getpgrp", "getpgid", "getsid", "setsid", "setpgid", "setuid", "setgid",
           "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid",
           "setgroups", "sched_yield", "getpriority", "setpriority", "sched_setaffinity",
           "sched_getscheduler", "sched_setscheduler", "sched_get_priority_max",
           "sched_get_priority_min", "ioprio_get", "ioprio_set", "membarrier",
           "set_robust_list", "futex", "personality", "sethostname",
           "setdomainname", "sched_setparam", "sched_setattr"):
    _sc(_n)
_sc("set_tid_address")
_sc("getresuid", out=[(0, Fixed(4)), (1, Fixed(4)), (2, Fixed(4))])
_sc("getresgid", out=[(0, Fixed(4)), (1, Fixed(4)), (2, Fixed(4))])
_sc("getgroups", out=[(1, ResultTimes(4))])
_sc("uname", out=[(0, Fixed(UTSNAME))])
_sc("sysinfo", out=[(0, Fixed(SYSINFO))])
_sc("getrlimit", out=[(1, Fixed(RLIMIT))])
_sc("setrlimit", EXECUTE)
_sc("prlimit64", EXECUTE_SELF, out=[(3, Fixed(RLIMIT))])
_sc("getrusage", out=[(1, Fixed(RUSAGE))])
_sc("getrandom", out=[(0, Result())])
_sc("getcpu", out=[(0, Fixed(4)), (1, Fixed(4))])
_sc("sched_getaffinity", out=[(2, Result())])
_sc("sched_getparam", out=[(1, Fixed(4))])
_sc("sched_getattr", out=[(1, ArgSize(2))])
_sc("sched_rr_get_interval", out=[(1, Fixed(TIMESPEC))])
_sc("capget", out=[(1, Fixed(24))])
_sc("get_robust_list", out=[(1, Fixed(8)), (2, Fixed(8))])
_sc("wait4", out=[(1, Fixed(4)), (3, Fixed(RUSAGE))])
_sc("waitid", out=[(2, Fixed(SIGINFO)), (4, Fixed(RUSAGE))])
_sc("prctl", irregular="prctl")
_sc("arch_prctl", EXECUTE)
_sc("rseq", REFUSE)
# Numbers Linux keeps but no longer implements: -ENOSYS, as without rrverify.
for _n in ("uselib", "create_module", "get_kernel_syms", "query_module", "nfsservctl",
           "getpmsg", "putpmsg", "afs_syscall", "tuxcall", "security", "vserver",
           "epoll_ctl_old", "epoll_wait_old", "_sysctl", "lookup_dcookie"):
    _sc(_n, REFUSE)
# The kernel's continuation of a syscall a signal interrupted (-ERESTART_RESTARTBLOCK): it
# writes what that syscall writes (recorder.c keeps its arguments).
_sc("restart_syscall", irregular="restart")

# --- more of what real programs use ------------------------------------------------------
for _n in ("kcmp", "acct", "semget", "semop", "semtimedop", "mq_open", "mq_unlink",
           "mq_notify", "pidfd_open", "pidfd_getfd", "pidfd_send_signal", "perf_event_open",
           "clock_settime", "settimeofday", "mbind", "set_mempolicy", "migrate_pages",
           "futex_wait", "futex_wake", "futex_waitv", "futex_requeue", "vhangup"):
    _sc(_n)
_sc("unshare", irregular="unshare")       # new namespaces are refused (recorder.c)
_sc("syslog", out=[(1, Result())])
_sc("recvmmsg", irregular="recvmmsg", out=[(4, Fixed(TIMESPEC))])
_sc("sendmmsg", out=[(1, ResultTimes(64))])     # the msg_len of each message sent
for _n in ("msgget", "msgsnd"):
    _sc(_n)
_sc("msgrcv", irregular="msgrcv")
_sc("msgctl", irregular="ipc_ctl")
_sc("semctl", irregular="ipc_ctl")
_sc("clock_adjtime", out=[(1, Fixed(TIMEX))])
_sc("adjtimex", out=[(0, Fixed(TIMEX))])
_sc("mq_timedreceive", out=[(1, Result()), (3, Fixed(4))])
_sc("mq_timedsend")
_sc("mq_getsetattr", out=[(2, Fixed(64))])
_sc("get_mempolicy", out=[(0, Fixed(4)), (1, FdSet(2))])
_sc("move_pages", out=[(4, ArgTimes(1, 4))])
_sc("cachestat", out=[(2, Fixed(32))])
_sc("listmount", out=[(1, ResultTimes(8))])
_sc("statmount", out=[(1, ArgSize(2))])
_sc("lsm_get_self_attr", out=[(1, DerefU32(2)), (2, Fixed(4))])
for _n in ("pkey_alloc", "pkey_free", "mseal"):    # the protection keys and sealing it sees
    _sc(_n, EXECUTE)

# --- process lifetime -------------------------------------------------------------------
_sc("execve", EXEC)
_sc("exit", EXIT)
_sc("exit_group", EXIT)
_sc("execveat", EXEC)
# A thread (CLONE_THREAD) or a child in its parent's memory alongside it is refused when the
# call is made (recorder.c: begin_fork); the parent's pidfd or parent_tid output is irregular.
for _n in ("clone", "clone3", "fork", "vfork"):
    _sc(_n, FORK, irregular="clone")
# On the calling process only (another one is refused): what they wrote is in its own memory.
_sc("process_vm_readv", irregular="process_vm")
_sc("process_vm_writev", irregular="process_vm")
# Installing a filter is answered by the recorder (recorder/program_filter.c); its other
# operations run: GET_NOTIF_SIZES writes 6 bytes.
_sc("seccomp", out=[(2, Fixed(6))])
for _n in ("ptrace", "bpf",
           "userfaultfd", "io_setup", "io_submit", "io_getevents", "io_uring_setup",
           "io_uring_enter", "io_uring_register", "shmget", "shmat", "shmctl", "shmdt",
           "remap_file_pages", "vmsplice", "modify_ldt"):
    _sc(_n, UNSUPPORTED, why="its effects cannot be recorded yet")


# ioctl commands whose number does not say what they write (_IOC_NONE with size 0: the old
# tty, socket and console families look like that): command -> (name, bytes the kernel writes
# at argument 2, 0 for none). Any other such command ends a recording (it is never guessed);
# an _IOC-encoded command writes _IOC_SIZE bytes when its direction has _IOC_READ.
IFREQ = 40
LEGACY_IOCTLS = {
    0x5401: ("TCGETS", 36), 0x5402: ("TCSETS", 0), 0x5403: ("TCSETSW", 0),
    0x5404: ("TCSETSF", 0), 0x5405: ("TCGETA", 18), 0x5406: ("TCSETA", 0),
    0x5407: ("TCSETAW", 0), 0x5408: ("TCSETAF", 0), 0x5409: ("TCSBRK", 0),
    0x540A: ("TCXONC", 0), 0x540B: ("TCFLSH", 0), 0x540C: ("TIOCEXCL", 0),
    0x540D: ("TIOCNXCL", 0), 0x540E: ("TIOCSCTTY", 0), 0x540F: ("TIOCGPGRP", 4),
    0x5410: ("TIOCSPGRP", 0), 0x5411: ("TIOCOUTQ", 4), 0x5412: ("TIOCSTI", 0),
    0x5413: ("TIOCGWINSZ", 8), 0x5414: ("TIOCSWINSZ", 0), 0x5415: ("TIOCMGET", 4),
    0x5416: ("TIOCMBIS", 0), 0x5417: ("TIOCMBIC", 0), 0x5418: ("TIOCMSET", 0),
    0x5419: ("TIOCGSOFTCAR", 4), 0x541A: ("TIOCSSOFTCAR", 0), 0x541B: ("FIONREAD", 4),
    0x541D: ("TIOCCONS", 0), 0x541E: ("TIOCGSERIAL", 72), 0x541F: ("TIOCSSERIAL", 0),
    0x5420: ("TIOCPKT", 0), 0x5421: ("FIONBIO", 0), 0x5422: ("TIOCNOTTY", 0),
    0x5423: ("TIOCSETD", 0), 0x5424: ("TIOCGETD", 4), 0x5425: ("TCSBRKP", 0),
    0x5427: ("TIOCSBRK", 0), 0x5428: ("TIOCCBRK", 0), 0x5429: ("TIOCGSID", 4),
    0x5450: ("FIONCLEX", 0), 0x5451: ("FIOCLEX", 0), 0x5452: ("FIOASYNC", 0),
    0x5456: ("TIOCGLCKTRMIOS", 36), 0x5457: ("TIOCSLCKTRMIOS", 0), 0x5460: ("FIOQSIZE", 8),
    0x2400: ("PERF_EVENT_IOC_ENABLE", 0), 0x2401: ("PERF_EVENT_IOC_DISABLE", 0),
    0x2402: ("PERF_EVENT_IOC_REFRESH", 0), 0x2403: ("PERF_EVENT_IOC_RESET", 0),
    0x5600: ("VT_OPENQRY", 4), 0x5601: ("VT_GETMODE", 8), 0x5603: ("VT_GETSTATE", 6),
    0x4B33: ("KDGKBTYPE", 1), 0x4B3B: ("KDGETMODE", 4),
    0x8901: ("FIOSETOWN", 0), 0x8902: ("SIOCSPGRP", 0), 0x8903: ("FIOGETOWN", 4),
    0x8904: ("SIOCGPGRP", 4), 0x8905: ("SIOCATMARK", 4), 0x8906: ("SIOCGSTAMP", 16),
    0x8907: ("SIOCGSTAMPNS", 16), 0x8910: ("SIOCGIFNAME", IFREQ),
    0x8913: ("SIOCGIFFLAGS", IFREQ), 0x8915: ("SIOCGIFADDR", IFREQ),
    0x8917: ("SIOCGIFDSTADDR", IFREQ), 0x8919: ("SIOCGIFBRDADDR", IFREQ),
    0x891B: ("SIOCGIFNETMASK", IFREQ), 0x891D: ("SIOCGIFMETRIC", IFREQ),
    0x8921: ("SIOCGIFMTU", IFREQ), 0x8927: ("SIOCGIFHWADDR", IFREQ),
    0x8933: ("SIOCGIFINDEX", IFREQ), 0x8942: ("SIOCGIFTXQLEN", IFREQ),
}


def _build() -> dict[int, Syscall]:
    table = {}
    for name, spec in _TABLE.items():
        if name not in NUMBERS:
            raise ValueError(f"syscall table names {name!r}, which has no x86-64 number")
        assert spec["handling"] in HANDLINGS, name
        assert not spec["irregular"] or spec["irregular"] in IRREGULAR, name
        table[NUMBERS[name]] = Syscall(name=name, nr=NUMBERS[name], **spec)
    return table


TABLE: dict[int, Syscall] = _build()


def name_of(nr: int) -> str:
    return NAMES.get(nr, f"syscall_{nr}")


AUDIT_ARCH_I386, AUDIT_ARCH_X86_64 = 0x40000003, 0xc000003e
X32_SYSCALL_BIT = 0x40000000


def foreign_abi(arch: int, nr: int) -> tuple[str, str]:
    """(ABI, syscall name) of a syscall the tracee filter trapped: i386 through `int $0x80`
    (its own numbers: 10 is unlink there), or an x32 number (bit 30 set)."""
    if arch == AUDIT_ARCH_I386:
        return "32-bit i386 (int $0x80)", python_ptrace_names("i386").get(nr, f"syscall_{nr}")
    if arch == AUDIT_ARCH_X86_64 and nr & X32_SYSCALL_BIT:
        return "x32", NAMES.get(nr & ~X32_SYSCALL_BIT, "?")
    return f"arch {arch:#x}", f"syscall_{nr}"
