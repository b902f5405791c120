"""Making a stopped tracee run syscalls for us (checkpoint capture and restore), and reading
and writing its memory."""
from __future__ import annotations

import errno
import os
import struct

from .._native import ffi, lib
from ..errors import InjectionRefused, NativeError, TraceeDied
from . import stub

from ..recorder.syscalls import NUMBERS as SYS
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
MAP_GROWSDOWN, MAP_FIXED_NOREPLACE = 0x100, 0x100000
SIG_SETMASK, SIG_BLOCK = 2, 0
PR_SET_MM, PR_SET_MM_MAP = 35, 14
KSIGACTION = struct.Struct("<QQQQ")     # handler, flags, restorer, mask
STACK_T = struct.Struct("<QiiQ")        # ss_sp, ss_flags, pad, ss_size
SIG_IGN, SS_DISABLE = 1, 2
PRCTL_MM_MAP = struct.Struct("<11QQII")  # see linux/prctl.h struct prctl_mm_map
MM_FIELDS = ("start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
             "start_stack", "arg_start", "arg_end", "env_start", "env_end")


class TraceeMemory:
    """/proc/PID/mem: reads and writes that ignore page protections, as a debugger's do."""

    def __init__(self, pid: int):
        self.pid = pid
        self.fd = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        self._pagemap_fd: int | None = None

    def pagemap_fd(self) -> int:
        """/proc/PID/pagemap, opened once (a checkpoint asks it of every region); -1 if it
        cannot be."""
        try:
            if self._pagemap_fd is None:
                self._pagemap_fd = os.open(f"/proc/{self.pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return -1
        return self._pagemap_fd

    def read(self, addr: int, size: int) -> bytes:
        try:
            return os.pread(self.fd, size, addr)
        except OSError:
            return b""

    def write(self, addr: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.pwrite(self.fd, view, addr)
            except OSError as e:
                n, why = 0, f": {e.strerror}"
            else:
                why = ""
            if n <= 0:
                raise NativeError(f"pid {self.pid}: cannot write memory at {addr:#x}{why}")
            view, addr = view[n:], addr + n

    def close(self) -> None:
        os.close(self.fd)
        if self._pagemap_fd is not None:
            os.close(self._pagemap_fd)


class Injector:
    """Runs syscalls in a tracee stopped at a syscall-exit stop, through `gadget` (the address
    of a `syscall` instruction it has mapped). Arguments that point to memory go through a
    scratch page at stub.SCRATCH, mapped while needed."""

    def __init__(self, pid: int, gadget: int, mem: TraceeMemory):
        self.pid, self.gadget, self.mem = pid, gadget, mem
        self._err = ffi.new("char[256]")
        self.scratch_mapped = False

    def syscall(self, name: str, *args: int, check: bool = True) -> int:
        result = self.syscalls([(name, args)])[0]
        if check and -4096 < result < 0:
            raise NativeError(f"pid {self.pid}: injected {name}{tuple(hex(a) for a in args)} "
                              f"failed: {errno.errorcode.get(-result, -result)}")
        return result

    def syscalls(self, calls: list[tuple[str, tuple]]) -> list[int]:
        """The (name, args) syscalls run one after another in one native call; their results,
        unchecked."""
        n = len(calls)
        flat = ffi.new(f"uint64_t[{6 * n}]")
        for k, (_, args) in enumerate(calls):
            for i, arg in enumerate(args):
                flat[6 * k + i] = arg & (2**64 - 1)
        results = ffi.new(f"int64_t[{n}]")
        rc = lib.rrv_inject_syscalls(self.pid, self.gadget, n,
                                     ffi.new("int64_t[]", [SYS[name] for name, _ in calls]),
                                     flat, results, self._err, 256)
        if rc == -2:
            raise TraceeDied(self.pid, results[0])
        if rc == -3:
            raise InjectionRefused(f"pid {self.pid}: {ffi.string(self._err).decode(errors='replace')}")
        if rc < 0:
            raise NativeError(f"pid {self.pid}: {ffi.string(self._err).decode(errors='replace')}")
        return list(results)

    def map_scratch(self) -> None:
        self.syscall("mmap", stub.SCRATCH, 4096, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
        self.scratch_mapped = True

    def unmap_scratch(self) -> None:
        if self.scratch_mapped:
            self.syscall("munmap", stub.SCRATCH, 4096)
            self.scratch_mapped = False

    # -- state the kernel keeps per task, read and written through syscalls --------------
    def signal_state_and_brk(self, also: int = 0) -> tuple[dict, int]:
        """(the mask, the alternate stack, and the actions of the signals that may differ from
        a fresh exec's: those that have a handler or are ignored (the kernel's SigCgt and
        SigIgn sets), and those in `also` (a default action keeps the flags and mask it was
        set with, which rt_sigaction's oldact shows: the recorder knows which signals the
        process set since its exec); brk). One rt_sigaction per such signal, not 62, each
        into its own 32 bytes of the scratch page, the alternate stack after them: all
        injected in one native call, and the scratch page read once."""
        sets = signal_sets(self.pid)
        wanted = sets.get("SigCgt", 0) | sets.get("SigIgn", 0) | also
        sigs = [sig for sig in range(1, 65)        # SIGKILL, SIGSTOP: fixed
                if sig not in (9, 19) and wanted >> (sig - 1) & 1]
        stack_at = stub.SCRATCH + 32 * len(sigs)
        results = self.syscalls(
            [("rt_sigaction", (sig, 0, stub.SCRATCH + 32 * k, 8)) for k, sig in enumerate(sigs)]
            + [("sigaltstack", (0, stack_at)), ("brk", (0,))])
        if -4096 < results[-2] < 0:
            raise NativeError(f"pid {self.pid}: injected sigaltstack failed: "
                              f"{errno.errorcode.get(-results[-2], -results[-2])}")
        scratch = self.mem.read(stub.SCRATCH, 32 * len(sigs) + STACK_T.size)
        actions = []
        for k, sig in enumerate(sigs):
            handler, flags, restorer, mask = KSIGACTION.unpack(scratch[32 * k:32 * k + 32])
            if handler or flags or mask:
                actions.append([sig, handler, flags, restorer, mask])
        sp, flags, _, size = STACK_T.unpack(scratch[32 * len(sigs):])
        return ({"mask": signal_mask(self.pid), "actions": actions, "altstack": [sp, flags, size]},
                results[-1])

    def set_signal_state(self, state: dict) -> None:
        for sig, handler, flags, restorer, mask in state["actions"]:
            self.mem.write(stub.SCRATCH, KSIGACTION.pack(handler, flags, restorer, mask))
            self.syscall("rt_sigaction", sig, stub.SCRATCH, 0, 8)
        sp, flags, size = state["altstack"]
        if flags & 0xffffffff != SS_DISABLE:   # (a disabled one may keep SS_AUTODISARM: set)
            self.mem.write(stub.SCRATCH, STACK_T.pack(sp, flags & ~1, 0, size))   # ~SS_ONSTACK
            self.syscall("sigaltstack", stub.SCRATCH, 0)
        self.mem.write(stub.SCRATCH, struct.pack("<Q", state["mask"]))
        self.syscall("rt_sigprocmask", SIG_SETMASK, stub.SCRATCH, 0, 8)

    def task_state(self, also_signals: int = 0) -> tuple[dict, int]:
        """(signal state, brk): what a checkpoint holds of the kernel's per-task state."""
        self.map_scratch()
        try:
            return self.signal_state_and_brk(also_signals)
        finally:
            self.unmap_scratch()

    def set_mm(self, mm: dict) -> None:
        """The kernel's view of the address space layout (brk, stack, argv/env bounds), set
        at once with PR_SET_MM_MAP (needs CAP_SYS_RESOURCE)."""
        data = PRCTL_MM_MAP.pack(*(mm[f] for f in MM_FIELDS), 0, 0, 0xffffffff)
        self.mem.write(stub.SCRATCH, data)
        self.syscall("prctl", PR_SET_MM, PR_SET_MM_MAP, stub.SCRATCH, len(data), 0)


class VerifierSite:
    """The verifier's own `syscall` instruction in a replayed process, for as long as a
    comparison injects syscalls: the restorer's code page (stub.CODE at stub.BASE), mapped again
    and unmapped afterwards. Nothing a trace says chooses where injected syscalls run.

    Mapping that page takes one syscall before any site of ours exists: for it, the two bytes
    at the tracee's ip become `syscall` and are put back at once. In replay every mapping is
    anonymous, so the patch touches no file; the stop check of rrv_inject_syscall refuses
    anything but the injected mmap."""

    def __init__(self, pid: int, mem: TraceeMemory):
        self.pid, self.mem = pid, mem

    def __enter__(self) -> Injector:
        from ..tracee import getregs
        ip = getregs(self.pid)["rip"]
        saved = self.mem.read(ip, 2)
        if len(saved) != 2:
            raise NativeError(f"pid {self.pid}: cannot read the code at its ip {ip:#x}")
        try:
            self.mem.write(ip, b"\x0f\x05")
            Injector(self.pid, ip, self.mem).syscall(
                "mmap", stub.BASE, 4096, PROT_READ | PROT_EXEC,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
        finally:
            self.mem.write(ip, saved)
        self.mem.write(stub.SYSCALL_GADGET, stub.CODE)
        self.injector = Injector(self.pid, stub.SYSCALL_GADGET, self.mem)
        return self.injector

    def __exit__(self, *exc) -> None:
        if exc[0] is None:      # after a failure the caller kills the tracee
            self.injector.syscall("munmap", stub.BASE, 4096)


def put_back_segv(pid: int, injector: Injector, mem: TraceeMemory, restore) -> None:
    """Undo what forcing SIGSEGV for a trapped rdtsc did to a program that had it blocked or
    ignored (the kernel unblocked it and reset its handler): restore (struct rrv_segv_restore)
    holds its action and mask from before. The tracee is at a stop injection works from."""
    injector.map_scratch()
    mem.write(stub.SCRATCH, KSIGACTION.pack(*restore.action))
    injector.syscall("rt_sigaction", 11, stub.SCRATCH, 0, 8)
    injector.unmap_scratch()
    if lib.rrv_set_sigmask(pid, restore.mask) < 0:
        raise NativeError(f"pid {pid}: cannot set its signal mask back")


MFD_CLOEXEC = 1


def file_memfd(injector: Injector, mem: TraceeMemory, recorded) -> int:
    """A memfd in the tracee of the recorded file's size, holding the bytes the trace has of it
    (exec_image.RecordedFile; the rest reads as zeros, sparse): what replay and restore map a
    recorded file from (past its end a mapping faults, MADV_DONTNEED goes back to it, shared
    mappings share it, as with the file). The scratch page must be mapped. Returns the
    tracee's fd."""
    mem.write(stub.SCRATCH, b"rrverify-file\0")
    fd = injector.syscall("memfd_create", stub.SCRATCH, MFD_CLOEXEC)
    injector.syscall("ftruncate", fd, recorded.size)
    if recorded.data:
        start = recorded.offset // 4096 * 4096
        size = -(-(recorded.offset + len(recorded.data) - start) // 4096) * 4096
        addr = injector.syscall("mmap", 0, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, start)
        mem.write(addr + recorded.offset - start, recorded.data)
        injector.syscall("munmap", addr, size)
    return fd


def make_file_memfd(pid: int, recorded) -> int:
    """file_memfd in a replayed process stopped at a syscall-exit stop, through the verifier's
    own site."""
    mem = TraceeMemory(pid)
    try:
        with VerifierSite(pid, mem) as injector:
            injector.map_scratch()
            fd = file_memfd(injector, mem, recorded)
            injector.unmap_scratch()
        return fd
    finally:
        mem.close()


def read_mm_layout(pid: int, brk: int) -> tuple[str, dict]:
    """The process's state (field 3: "t" in a ptrace stop) and address-space bounds (fields
    26-28 and 45-51, plus brk), from one read of /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): field n is fields[n - 3]
    get = lambda n: int(fields[n - 3])
    return fields[0], {
        "start_code": get(26), "end_code": get(27), "start_stack": get(28),
        "start_data": get(45), "end_data": get(46), "start_brk": get(47), "brk": brk,
        "arg_start": get(48), "arg_end": get(49), "env_start": get(50), "env_end": get(51)}


def signal_sets(pid: int) -> dict[str, int]:
    """The signal sets of /proc/PID/status: SigPnd, ShdPnd, SigBlk, SigIgn, SigCgt."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"):
                out[key] = int(value.strip(), 16)
    return out


def signal_mask(pid: int) -> int:
    """The stopped tracee's blocked signals (PTRACE_GETSIGMASK)."""
    mask_out = ffi.new("uint64_t *")
    if lib.rrv_get_sigmask(pid, mask_out) < 0:
        raise NativeError(f"PTRACE_GETSIGMASK of pid {pid}: {os.strerror(ffi.errno)}")
    return mask_out[0]


def exec_signal_state(pid: int) -> dict | None:
    """The signal state Injector.signal_state_and_brk would read of a process stopped right
    after an exec, found without injecting a syscall: the exec set every handled signal's
    action to the default and kept each ignored one ignored, all with no flags, restorer or
    mask (the kernel's flush_signal_handlers), and cleared the alternate stack; the mask it
    kept is PTRACE_GETSIGMASK's. None if /proc/PID/status shows a signal handled (not a fresh
    exec: read it by injection)."""
    sets = signal_sets(pid)
    if sets.get("SigCgt", 0):
        return None
    ignored = sets.get("SigIgn", 0)
    return {"mask": signal_mask(pid),
            "actions": [[sig, SIG_IGN, 0, 0, 0] for sig in range(1, 65)
                        if sig not in (9, 19) and ignored >> (sig - 1) & 1],
            "altstack": [0, SS_DISABLE, 0]}


def signal_pending(pid: int) -> bool:
    """Would a signal be delivered as soon as the tracee runs (pending and not blocked)?"""
    sets = signal_sets(pid)
    return bool((sets.get("SigPnd", 0) | sets.get("ShdPnd", 0)) & ~sets.get("SigBlk", 0))
