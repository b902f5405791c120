"""Starting a tracee (through the native core) and the Python side of the native callbacks."""
from __future__ import annotations

import os
import threading
import resource

from ._native import ffi, lib
from .errors import NativeError

RLIMITS = {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}

# The CPUs this process may use, before recording or replay pins a thread to one of them.
ORIGINAL_AFFINITY = frozenset(os.sched_getaffinity(0))


def choose_cpu() -> int:
    """The CPU the tracer and its tracee are pinned to (FACTS: a cross-CPU ptrace stop costs
    about six times a same-CPU one). RRVERIFY_CPU overrides."""
    allowed = sorted(ORIGINAL_AFFINITY)
    want = os.environ.get("RRVERIFY_CPU")
    if want is not None:
        if int(want) not in allowed:
            raise NativeError(f"RRVERIFY_CPU={want} is not among this process's CPUs {allowed}")
        return int(want)
    return allowed[-1]


def keep_off_cpu(cpu: int) -> None:
    """Run the calling thread on the CPUs this process started with, bar the tracer's: a
    background thread of the recorder (compression, checkpoints) then works beside the tracer
    and its tracees instead of taking turns with them. On a one-CPU machine it shares it. Best
    effort: a thread that cannot move works where it is."""
    others = ORIGINAL_AFFINITY - {cpu}
    if others:
        try:
            os.sched_setaffinity(0, others)   # this thread only
        except OSError:
            pass    # the CPUs changed since (a cpuset): it works where it is


def current_rlimits(pid: int = 0) -> list[list]:
    """[name, soft, hard] of every resource limit of process pid (0: this one), -1 for
    unlimited, by resource number."""
    out = []
    for name, res in sorted(RLIMITS.items(), key=lambda kv: kv[1]):
        if name in ("RLIMIT_OFILE",):
            continue
        cur, mx = resource.prlimit(pid, res)
        out.append([name, cur, mx])
    return out


def personality(pid: int) -> int:
    with open(f"/proc/{pid}/personality") as f:
        return int(f.read(), 16)


def spawn(exe: str, argv: list[str], env: list[str], *, cwd: str | None, cpu: int,
          sandbox: bool = False, exec_fd: int | None = None, rlimits: list | None = None,
          syscallbuf: bool = False) -> int:
    """Fork a tracee that stops right before execve(exe, argv, env), under our seccomp filter,
    with ASLR off, rdtsc trapping, default signal dispositions and an empty signal mask.
    exec_fd: execute that open file instead of the path exe (the restorer's memfd). sandbox
    (replay): confined so that it can reach nothing of this machine (docs/checks.md §1.1).
    syscallbuf (record): its filter lets the preload's buffered syscalls through. Returns its
    pid."""
    keep = []

    def cstr(s: str):
        p = ffi.new("char[]", os.fsencode(s))
        keep.append(p)
        return p

    c_argv = ffi.new("char*[]", [cstr(a) for a in argv] + [ffi.NULL])
    c_env = ffi.new("char*[]", [cstr(e) for e in env] + [ffi.NULL])
    spec = ffi.new("struct rrv_spawn *")
    spec.path = cstr(exe)
    spec.argv = c_argv
    spec.envp = c_env
    spec.cwd = cstr(cwd) if cwd else ffi.NULL
    spec.cpu = cpu
    spec.exec_fd = -1 if exec_fd is None else exec_fd
    spec.sandbox = int(sandbox)
    spec.syscallbuf = int(syscallbuf)
    limits = [(RLIMITS[n], c, m) for n, c, m in (rlimits or []) if n in RLIMITS]
    if len(limits) > 16:
        raise NativeError("too many resource limits")
    spec.nrlimits = len(limits)
    for i, (res, cur, mx) in enumerate(limits):
        spec.rlimits[i].resource = res
        spec.rlimits[i].cur = cur if cur >= 0 else 2**64 - 1
        spec.rlimits[i].max = mx if mx >= 0 else 2**64 - 1
    err = ffi.new("char[512]")
    pid = lib.rrv_spawn(spec, err, 512)
    if pid < 0:
        raise NativeError(f"cannot start {exe}: {ffi.string(err).decode(errors='replace')}")
    return pid


def regs_dict(regs) -> dict:
    from .events import REG_NAMES
    return {n: getattr(regs, n) for n in REG_NAMES}


def getregs(pid: int) -> dict:
    regs = ffi.new("struct rrv_regs *")
    if lib.rrv_getregs(pid, regs) < 0:
        raise NativeError(f"PTRACE_GETREGS on pid {pid} failed")
    return regs_dict(regs)


class CallbackTarget:
    """Base for objects the native loops call back into. A callback must not raise into C:
    the first exception is kept here and re-raised by the driver when the loop returns (the
    loop of the same thread: a recording runs one per tracer thread). Callbacks hold `lock`,
    which the recorder's driver holds too between its loops' returns."""

    def __init__(self):
        self._per_thread = threading.local()
        self.lock = threading.RLock()
        self.handle = ffi.new_handle(self)

    @property
    def error(self) -> BaseException | None:
        return getattr(self._per_thread, "error", None)

    @error.setter
    def error(self, value: BaseException | None) -> None:
        self._per_thread.error = value

    def reraise(self):
        if self.error is not None:
            err, self.error = self.error, None
            raise err


def _guard(fn):
    def wrapper(handle, *args):
        target = ffi.from_handle(handle)
        with target.lock:
            try:
                return fn(target, *args)
            except BaseException as e:  # noqa: BLE001 -- handed back to the driver, never lost
                if target.error is None:
                    target.error = e
                return -1
    wrapper.__name__ = fn.__name__
    return wrapper


@ffi.def_extern()
@_guard
def rrv_py_blob_put(target, data, length, digest_out):
    digest = target.blob_put(bytes(ffi.buffer(data, length)))
    ffi.memmove(digest_out, digest, 32)
    return 0


@ffi.def_extern()
@_guard
def rrv_py_blob_get(target, digest, data_out, len_out):
    buf = target.blob_get(bytes(ffi.buffer(digest, 32)))
    data_out[0] = ffi.from_buffer(buf)
    len_out[0] = len(buf)
    return 0


@ffi.def_extern()
@_guard
def rrv_py_file_mapped(target, pid, fd, offset, length, index_out):
    index_out[0] = target.file_mapped(pid, fd, offset, length)
    return 0


@ffi.def_extern()
@_guard
def rrv_py_file_fd(target, index, addr, length, offset, fd_out):
    fd_out[0] = target.file_fd(index, addr, length, offset)
    return 0
