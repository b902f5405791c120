"""Checkpoint capture: a recording tracee's state, at a syscall-exit stop, into the trace."""
from __future__ import annotations

from .. import exec_image
from .._native import ffi, lib
from ..errors import NativeError
from ..tracee import getregs
from .inject import Injector, TraceeMemory, read_mm_layout
from .pages import PAGE, UNREADABLE, page_digest

# Kernel-provided pages no program state lives in (the vDSO's data page; the legacy
# vsyscall page): neither stored nor compared.
SKIP_REGIONS = ("[vvar]", "[vvar_vclock]", "[vsyscall]")
XSTATE_MAX = 16384


def read_xstate(pid: int) -> bytes:
    buf = ffi.new(f"uint8_t[{XSTATE_MAX}]")
    n = lib.rrv_get_xstate(pid, buf, XSTATE_MAX)
    if n < 0:
        raise NativeError(f"pid {pid}: cannot read its XSAVE state")
    return bytes(ffi.buffer(buf, n))


def read_region_pages(mem: TraceeMemory, start: int, end: int) -> list[bytes | None]:
    """The region's pages; None for a page the kernel refuses to read (a file mapping past
    the file's end)."""
    data = mem.read(start, end - start)
    if len(data) == end - start:
        return [data[i:i + PAGE] for i in range(0, len(data), PAGE)]
    pages = []
    for addr in range(start, end, PAGE):
        page = mem.read(addr, PAGE)
        pages.append(page if len(page) == PAGE else None)
    return pages


def memory_pagemap(mem: TraceeMemory, maps: list[dict], on_page=None):
    """(regions, pagemap): the regions we keep and the concatenated digests of their pages.
    on_page(digest, data) sees every readable page."""
    regions, pagemap = [], bytearray()
    for r in maps:
        if r["path"] in SKIP_REGIONS:
            continue
        first = len(pagemap) // 16
        for page in read_region_pages(mem, r["start"], r["end"]):
            if page is None:
                pagemap += UNREADABLE
                continue
            d = page_digest(page)
            pagemap += d
            if on_page is not None:
                on_page(d, page)
        regions.append({"start": r["start"], "end": r["end"], "perms": r["perms"],
                        "offset": r["offset"], "path": r["path"], "first_page": first})
    return regions, bytes(pagemap)


def capture(pid: int, *, event: int, gadget: int, writer, pages) -> dict:
    """Capture the tracee (stopped at a syscall-exit stop, no signal pending) as the checkpoint
    replay restores to run from `event` on. Returns the checkpoint record written."""
    mem = TraceeMemory(pid)
    try:
        regs = getregs(pid)
        xstate = read_xstate(pid)
        signals, brk = Injector(pid, gadget, mem).task_state()
        mm = read_mm_layout(pid, brk)
        regions, pagemap = memory_pagemap(mem, exec_image.read_maps(pid), pages.add)
    finally:
        mem.close()
    pages.flush()   # every page this checkpoint names is in pages.idx before the checkpoint is
    ckpt = {"event": event, "tid": pid, "regs": regs, "gadget": gadget,
            "xstate": writer.put_blob(xstate).hex(),
            "fpu_digest": lib.rrv_fpu_digest_of(xstate, len(xstate)),
            "signals": signals, "mm": mm, "regions": regions,
            "pagemap": writer.put_blob(pagemap).hex(),
            "pages": len(pagemap) // 16}
    writer.add_checkpoint(ckpt)
    return ckpt
