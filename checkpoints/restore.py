"""Checkpoint restore: a fresh process, on any machine, with a checkpoint's exact address space,
memory, registers and signal state, built from the trace alone.

The fresh process exec's the restorer stub (checkpoints/stub.py) under the same starting
conditions as a recording's tracee (seccomp filter, ASLR off, rdtsc trapping); the restore then
drives it by syscall injection: unmap everything but the stub, map each recorded region,
write its pages, set the kernel's brk and stack bounds, the signal state, and finally the
registers. It stands at a syscall-exit stop, as the recording did when the checkpoint was
taken."""
from __future__ import annotations

from .. import exec_image
from .._native import ffi, lib
from ..errors import NativeError, TraceError
from ..tracee import spawn
from . import stub
from .inject import (MAP_ANONYMOUS, MAP_FIXED, MAP_GROWSDOWN, MAP_PRIVATE, MAP_SHARED,
                     PROT_EXEC, PROT_READ, PROT_WRITE, Injector, TraceeMemory, file_memfd)
from .capture import CHUNK_PAGES
from .model import checkpoint_pagemap, checkpoint_xstate
from .pages import PAGE, UNREADABLE, ZERO, PageStoreReader, page_digest

_restorer_fd = None


def _restorer() -> int:
    """The restorer's memfd (close-on-exec: the restored process executes it by descriptor,
    then holds no descriptor of ours)."""
    global _restorer_fd
    if _restorer_fd is None:
        _restorer_fd = stub.restorer_fd()
    return _restorer_fd


def prot_of(perms: str) -> int:
    return ((PROT_READ if perms[0] == "r" else 0) | (PROT_WRITE if perms[1] == "w" else 0) |
            (PROT_EXEC if perms[2] == "x" else 0))


def _runs(digests: list[bytes], own):
    """(first page index, [digests]) runs of at most CHUNK_PAGES pages i for which
    own(i, digest) is false: the pages a restore must write."""
    run_start, run = None, []
    for i, d in enumerate(digests):
        mine = own(i, d)
        if mine or len(run) == CHUNK_PAGES:
            if run:
                yield run_start, run
            run_start, run = None, []
        if not mine:
            if not run:
                run_start = i
            run.append(d)
    if run:
        yield run_start, run


def restore(trace, ckpt: dict, *, cpu: int, pages: PageStoreReader | None = None) -> int:
    """A new process in the checkpoint's state; returns its pid (the caller owns it)."""
    pages = pages or PageStoreReader(trace)
    pagemap = checkpoint_pagemap(trace, ckpt)
    xstate = checkpoint_xstate(trace, ckpt)
    # The checkpoint's limits (the program may have changed its own), except that replay never
    # dumps core.
    rlimits = [l for l in ckpt["rlimits"] if l[0] != "RLIMIT_CORE"] + [["RLIMIT_CORE", 0, 0]]
    pid = spawn("rrverify-restorer", ["rrverify-restorer"], [], cwd=None, cpu=cpu,
                exec_fd=_restorer(), sandbox=True, rlimits=rlimits)
    try:
        _build(pid, trace, ckpt, pages, pagemap, xstate)
    except BaseException:
        lib.rrv_kill(pid)
        raise
    return pid


def _build(pid, trace, ckpt, pages, pagemap, xstate) -> None:
    err = ffi.new("char[256]")
    if lib.rrv_run_initial_exec(pid, err, 256) < 0:
        raise NativeError(f"restorer: {ffi.string(err).decode(errors='replace')}")
    if ckpt["trap"] == "rdtsc" and lib.rrv_trap_rdtsc_at(pid, stub.RDTSC) < 0:
        raise NativeError(f"pid {pid}: cannot set the kernel's trap state with an rdtsc")
    mem = TraceeMemory(pid)
    inj = Injector(pid, stub.SYSCALL_GADGET, mem)
    try:
        for r in exec_image.read_maps(pid):
            if r["start"] != stub.BASE and r["start"] < 1 << 47:
                inj.syscall("munmap", r["start"], r["end"] - r["start"])
        for r in ckpt["regions"]:
            if r["start"] < stub.SCRATCH + PAGE and stub.BASE < r["end"]:
                raise TraceError(f"checkpoint {ckpt['id']}: region {r['start']:#x}-{r['end']:#x} "
                                 f"overlaps the restorer at {stub.BASE:#x}")
        inj.map_scratch()
        files = _RecordedFiles(pages, inj, mem)
        # Shared regions first: what the program wrote through them (the file as it is now) is
        # what a private mapping of the same file shows on the pages it never wrote.
        for r in sorted(ckpt["regions"], key=lambda r: r["perms"][3] != "s"):
            _map_region(inj, mem, pages, r, pagemap, files, trace, ckpt["id"])
        files.close()
        inj.set_mm(ckpt["mm"])
        inj.syscall("personality", ckpt["personality"])
        inj.set_signal_state(ckpt["signals"])
        inj.unmap_scratch()
        inj.syscall("munmap", stub.BASE, PAGE)
        regs = ffi.new("struct rrv_regs *")
        for name, value in ckpt["regs"].items():
            setattr(regs, name, value)
        if lib.rrv_setregs(pid, regs) < 0:
            raise NativeError(f"pid {pid}: cannot set the checkpoint's registers")
        if lib.rrv_set_xstate(pid, xstate, len(xstate)) < 0:
            raise NativeError(f"pid {pid}: cannot set the checkpoint's XSAVE state")
    finally:
        mem.close()


def _map_region(inj: Injector, mem: TraceeMemory, pages: PageStoreReader, r: dict,
                pagemap: bytes, files: "_RecordedFiles", trace, ckpt_id: int) -> None:
    """Map one region and write the pages it does not get from its mapping: a region that
    mapped a recorded file maps it again (from a memfd of its recorded content and size: past
    its end the pages fault, as they did), so only pages that differ from the file's are
    written; an anonymous region gets every page that is not zero. Pages are written while
    the mapping is writable; its recorded protection comes after."""
    start, end = r["start"], r["end"]
    n = (end - start) // PAGE
    first = r["first_page"]
    sharing = MAP_SHARED if r["perms"][3] == "s" else MAP_PRIVATE
    if "file" in r:
        fd, content = files.get(r["file"])
        inj.syscall("mmap", start, end - start, PROT_READ | PROT_WRITE, MAP_FIXED | sharing,
                    fd, r["offset"])

        def own(i: int, d: bytes) -> bool:   # what the mapping already shows there
            off = r["offset"] + i * PAGE
            if off >= content.size:          # past the file's end: only a fault can be there
                if d != UNREADABLE:
                    raise TraceError(f"{trace.path}: checkpoint {ckpt_id}: region "
                                     f"{start:#x}-{end:#x} holds data at {start + i * PAGE:#x}, "
                                     f"past the end of the file it maps (#{r['file']})")
                return True
            return d == UNREADABLE or d == content.page_digest(off, page_digest)
    else:
        flags = MAP_FIXED | MAP_ANONYMOUS | sharing
        if r["path"] == "[stack]":
            flags |= MAP_GROWSDOWN
        inj.syscall("mmap", start, end - start, PROT_READ | PROT_WRITE, flags, -1, 0)

        def own(i: int, d: bytes) -> bool:
            return d == ZERO
    for c0 in range(0, n, CHUNK_PAGES):
        c1 = min(n, c0 + CHUNK_PAGES)
        if "file" not in r and \
                pagemap.count(0, (first + c0) * 16, (first + c1) * 16) == (c1 - c0) * 16:
            continue    # zero pages, as the fresh mapping has them: a reserved heap's gigabytes
        digests = [pagemap[(first + i) * 16:(first + i + 1) * 16] for i in range(c0, c1)]
        for i, run in _runs(digests, lambda i, d: own(c0 + i, d)):
            data = b"".join(p if (p := pages.page(d)) is not None else bytes(PAGE) for d in run)
            mem.write(start + (c0 + i) * PAGE, data)
            if "file" in r and sharing == MAP_SHARED:    # that went into the file itself
                content.write(r["offset"] + (c0 + i) * PAGE, data)
    prot = prot_of(r["perms"])
    if prot != PROT_READ | PROT_WRITE:
        inj.syscall("mprotect", start, end - start, prot)


class _RecordedFiles:
    """The memfds a restore maps recorded files from, made in the restored process on first
    use and closed once every region is mapped (the mappings keep them)."""

    def __init__(self, pages: PageStoreReader, inj: Injector, mem: TraceeMemory):
        self.pages, self.inj, self.mem = pages, inj, mem
        self.open: dict[int, tuple[int, exec_image.RecordedFile]] = {}

    def get(self, index: int) -> tuple[int, "exec_image.RecordedFile"]:
        """The memfd, and the file as it is now (shared regions write into it)."""
        if index not in self.open:
            recorded = self.pages.recorded_file(index).writable_copy()
            self.open[index] = (file_memfd(self.inj, self.mem, recorded), recorded)
        return self.open[index]

    def close(self) -> None:
        for fd, _ in self.open.values():
            self.inj.syscall("close", fd)
        self.open.clear()
