"""Checkpoint capture: a recording tracee's state, at a syscall-exit stop, into the trace, in
three steps: snapshot() takes what needs ptrace (registers, FPU and signal state); Snapshot.read
the rest, from /proc and the tracee's memory, while it is still stopped; finish() digests,
stores and indexes what was read, without the tracee (the recorder runs it beside,
checkpoints/finisher.py)."""
from __future__ import annotations

from .. import exec_image
from .._native import ffi, lib
from ..errors import NativeError
from ..trace import file_content
from ..tracee import current_rlimits, getregs, personality
from .inject import Injector, TraceeMemory, exec_signal_state, read_mm_layout
from .pages import PAGE, UNREADABLE, ZERO, page_digests

# Kernel-provided pages no program state lives in (the vDSO's data page; the legacy
# vsyscall page): neither stored nor compared.
SKIP_REGIONS = ("[vvar]", "[vvar_vclock]", "[vsyscall]")
XSTATE_MAX = 16384


def task_attributes(pid: int) -> dict:
    """What else of the process the kernel keeps and the program's executed syscalls act on:
    its resource limits (RLIMIT_STACK bounds stack growth) and personality
    (READ_IMPLIES_EXEC changes mmap's protections)."""
    return {"rlimits": current_rlimits(pid), "personality": personality(pid)}


def read_xstate(pid: int) -> bytes:
    buf = ffi.new(f"uint8_t[{XSTATE_MAX}]")
    n = lib.rrv_get_xstate(pid, buf, XSTATE_MAX)
    if n < 0:
        raise NativeError(f"pid {pid}: cannot read its XSAVE state")
    return bytes(ffi.buffer(buf, n))


# Memory is read, hashed, restored and compared this many pages at a time: a process of any
# size costs a worker a bounded buffer, not a copy of itself (and the recorder at most
# MAX_HELD_BYTES per snapshot, below).
CHUNK_PAGES = 4096                  # 16 MiB


def read_region(mem: TraceeMemory, start: int, end: int) -> tuple[bytes, set[int]]:
    """The range's bytes, and the indexes of pages the kernel refuses to read (a file
    mapping past the file's end), which read as zeros here."""
    data = mem.read(start, end - start)
    if len(data) == end - start:
        return data, set()
    pages, unreadable = [], set()
    for i, addr in enumerate(range(start, end, PAGE)):
        page = mem.read(addr, PAGE)
        if len(page) != PAGE:
            unreadable.add(i)
            page = bytes(PAGE)
        pages.append(page)
    return b"".join(pages), unreadable


def region_chunks(mem: TraceeMemory, start: int, end: int):
    """(index of the chunk's first page in the region, its bytes, its unreadable pages'
    indexes within the chunk) for consecutive chunks of at most CHUNK_PAGES pages."""
    for addr in range(start, end, CHUNK_PAGES * PAGE):
        data, unreadable = read_region(mem, addr, min(end, addr + CHUNK_PAGES * PAGE))
        yield (addr - start) // PAGE, data, unreadable


class UnchangedPages:
    """Page names of earlier checkpoints by address and a fast 64-bit hash of the page's
    bytes: a page found keeps its name (and is already stored). One for a whole recording.
    The table is native (checkpoints/unchanged_pages.c): name_runs names every run a
    checkpoint read in one call, without the GIL."""

    def __init__(self):
        table = lib.rrv_unchanged_new()
        if table == ffi.NULL:
            raise MemoryError("no memory for a checkpoint's page table")
        self.table = ffi.gc(table, lib.rrv_unchanged_free)


def name_runs(runs: list[tuple[int, object]],
              unchanged: UnchangedPages | None) -> list[tuple[bytes, list[int]]]:
    """For each (addr, data) run: (the names of data's pages, read from addr, 16 bytes each;
    the indexes of the pages named now rather than kept from `unchanged`, which learns them).
    All in one native call."""
    if not runs:
        return []
    counts = [len(data) // PAGE for _, data in runs]
    total = sum(counts)
    names = ffi.new(f"uint8_t[{16 * max(total, 1)}]")
    changed = ffi.new(f"uint32_t[{max(total, 1)}]")
    nchanged = ffi.new(f"uint64_t[{len(runs)}]")
    datas = [ffi.from_buffer(data) for _, data in runs]
    if lib.rrv_name_runs(ffi.NULL if unchanged is None else unchanged.table, len(runs),
                         ffi.new("uint64_t[]", [addr for addr, _ in runs]),
                         ffi.new("uint8_t *[]", datas), ffi.new("uint64_t[]", counts),
                         names, changed, nchanged) < 0:
        raise NativeError("naming a checkpoint's pages: out of memory, or libcrypto failed")
    out, at, done = [], 0, 0
    for r, n in enumerate(counts):
        out.append((bytes(ffi.buffer(names + 16 * at, 16 * n)),
                    list(changed[done:done + nchanged[r]])))
        at += n
        done += nchanged[r]
    return out


def private_anonymous(region: dict) -> bool:
    """Heaps, stacks, buffers: memory whose pages never touched read as zeros. Reserved and
    never touched, they are most of what a checkpoint would read (the preload's 1 MiB buffer,
    a runtime's arenas), so they are found in pagemap and not read, by capture and comparison
    alike. (A region of a checkpoint names no inode: a file mapping has a path.)"""
    return (region["perms"][3] == "p" and not region.get("inode") and
            region["path"] in ("", "[heap]", "[stack]"))


def untouched_page_runs(mem, start: int, npages: int):
    """(first, count, untouched) runs covering npages pages of a private anonymous mapping
    from start: an untouched page (pagemap: neither present nor swapped, bits 63 and 62) reads
    as zeros, and is not read. With an unreadable pagemap, every page is read. (The capture's
    own planning, rrv_plan_reads, for this one region.)"""
    _, runs, n = _plan_reads(mem, [(start, npages, 0, lib.RRV_REGION_ANON)], npages)
    return [(runs[k].first, runs[k].count, runs[k].kind == lib.RRV_RUN_ZERO) for k in range(n)]


def _plan_reads(mem, plans: list[tuple], chunk_pages: int):
    """(regions, runs, number of runs): rrv_plan_reads of the rrv_region_plan tuples."""
    regions = ffi.new("struct rrv_region_plan[]", plans)
    runs = ffi.new("struct rrv_run[]", 4 * len(plans))
    while True:
        n = lib.rrv_plan_reads(mem.pagemap_fd(), regions, len(plans), chunk_pages, runs,
                               len(runs))
        if n < 0:
            raise MemoryError("cannot plan a checkpoint's reads")
        if n <= len(runs):
            return regions, runs, n
        runs = ffi.new("struct rrv_run[]", n)


class MemorySnapshot:
    """A stopped tracee's memory as a checkpoint needs it, read while it was stopped: per
    region, runs of pages that are still their file's (nothing read), runs of untouched pages
    (nothing read) and runs read from memory. Digesting it (digest_memory) needs no tracee: it
    can run while the tracee goes on.

    Each run is a tuple, in address order: ("file", f, content, offset, npages), ("zero",
    npages), ("read", addr, data, unreadable, offset, f, content), or ("digests", bytes) for
    runs digested already (digest_so_far)."""

    def __init__(self):
        self.regions: list[dict] = []
        self.runs: list[tuple] = []
        self.bytes = 0          # of memory read and held

    def digest_so_far(self, pages, unchanged: UnchangedPages | None) -> None:
        """Digest the runs held (storing their new pages) and let go of their bytes: a
        process with more memory than MAX_HELD_BYTES is not copied whole (the caller makes
        sure nothing else uses `pages` and `unchanged` meanwhile)."""
        self.runs = [("digests", digest_memory(self, pages, unchanged))]
        self.bytes = 0


# The most memory a snapshot holds: past it, read_memory's `full` is called (the recorder
# then digests what is held, checkpoints/finisher.py).
MAX_HELD_BYTES = 256 << 20


# Memory read is handed on (to `full`, and by it to the digests) at least this often.
READ_BATCH_BYTES = 32 << 20


def read_memory(mem: TraceeMemory, maps: list[dict], mapped_files: dict | None = None,
                file_unchanged=None, full=None) -> MemorySnapshot:
    """The regions we keep and their pages' contents, planned and read in a few native calls
    (checkpoints/memory_reader.c). mapped_files: as Snapshot.read's. A page equal to its
    mapped file's page (at its own offset) is not hashed later: it has that file page's
    digest, computed once per trace (pages.file_pages); so has a whole run of them in one
    comparison, the text of every library a fresh exec maps. file_unchanged(region, blob):
    whether the region's file is still, by its times, the content the trace stores; then the
    pages of a private mapping of it that the process never copied are not even read (a
    compiler's 30 MB of text cost its page table). Untouched pages of a private anonymous
    region are zeros, not read. full(snapshot): called whenever the snapshot holds more than
    MAX_HELD_BYTES of memory read, to digest it."""
    snap = MemorySnapshot()
    plans, kept = [], []        # per region kept: its rrv_region_plan; (region, file, content)
    npages = 0
    unchanged_files: dict[tuple, bool] = {}     # asked once per file, not once per region
    for r in maps:
        if r["path"] in SKIP_REGIONS:
            continue
        f = mapped_files.get((r["dev"], r["inode"])) if mapped_files and r["inode"] else None
        content = None if f is None else f[1]
        count = (r["end"] - r["start"]) // PAGE
        mode, in_file = lib.RRV_REGION_READ, 0
        if content is not None and file_unchanged is not None and r["perms"][3] == "p":
            file = (r["dev"], r["inode"])
            if file not in unchanged_files:
                unchanged_files[file] = file_unchanged(r, f[0])
            if unchanged_files[file]:
                mode = lib.RRV_REGION_FILE
                in_file = max(0, -(-(len(content) - r["offset"]) // PAGE))
        elif private_anonymous(r):
            mode = lib.RRV_REGION_ANON
        plans.append((r["start"], count, in_file, mode))
        kept.append((r, f, content))
        snap.regions.append({"start": r["start"], "end": r["end"], "perms": r["perms"],
                             "offset": r["offset"], "path": r["path"], "first_page": npages,
                             **({"file": r["file"]} if "file" in r else {})})
        npages += count
    if not plans:
        return snap
    regions, runs, n = _plan_reads(mem, plans, CHUNK_PAGES)
    batch: list[int] = []       # runs planned and not yet handed on, their bytes to read
    batch_bytes = 0
    for k in range(n):
        batch.append(k)
        if runs[k].kind == lib.RRV_RUN_READ:
            batch_bytes += runs[k].count * PAGE
        if batch_bytes >= min(READ_BATCH_BYTES, MAX_HELD_BYTES) or k == n - 1:
            _read_batch(mem, regions, runs, batch, kept, snap)
            batch, batch_bytes = [], 0
            if full is not None and snap.bytes > MAX_HELD_BYTES:
                full(snap)
    return snap


# Read buffers are not zeroed first: the kernel writes every byte of them (a page it cannot
# read, rrv_read_runs zeroes). bytearray's memset was a third of a checkpoint's read.
_uncleared = ffi.new_allocator(should_clear_after_alloc=False)


def _read_batch(mem: TraceeMemory, regions, runs, batch: list[int], kept, snap) -> None:
    """Read the batch's runs to read, in one native call, and add every run of the batch to
    the snapshot, in order."""
    reads = [k for k in batch if runs[k].kind == lib.RRV_RUN_READ]
    bufs = {k: _uncleared(f"uint8_t[{runs[k].count * PAGE}]") for k in reads}
    unreadable_of: dict[int, set[int]] = {}
    if reads:
        first = batch[0]
        pointers = ffi.new("uint8_t *[]", [bufs.get(k, ffi.NULL)
                                            for k in range(first, batch[-1] + 1)])
        cap = sum(runs[k].count for k in reads)
        unreadable = ffi.new("uint32_t[]", 2 * cap)
        lost = lib.rrv_read_runs(mem.pid, mem.fd, regions, runs + first, len(pointers),
                                 pointers, unreadable, cap)
        for i in range(lost):
            unreadable_of.setdefault(first + unreadable[2 * i], set()).add(unreadable[2 * i + 1])
    for k in batch:
        run = runs[k]
        r, f, content = kept[run.region]
        addr = r["start"] + run.first * PAGE
        offset = r["offset"] + run.first * PAGE
        if run.kind == lib.RRV_RUN_FILE:
            snap.runs.append(("file", f, content, offset, run.count))
        elif run.kind == lib.RRV_RUN_ZERO:
            snap.runs.append(("zero", run.count))
        else:
            data = ffi.buffer(bufs[k])      # (slices of it are bytes)
            snap.runs.append(("read", addr, data, unreadable_of.get(k, set()), offset, f,
                              content))
            snap.bytes += len(data)


def digest_memory(snap: MemorySnapshot, pages=None,
                  unchanged: UnchangedPages | None = None) -> bytes:
    """The concatenated digests of the snapshot's pages. pages (a PageStoreWriter) gets every
    readable page that is new since `unchanged` saw it, as a reference into its file's blob
    where it is still the file's page. The pages read are named in one native call."""
    parts: list = []
    to_name: list[tuple[int, tuple]] = []     # (index in parts, the run) of runs to name
    for run in snap.runs:
        kind = run[0]
        if kind == "file":
            _, f, content, offset, m = run
            parts.append(b"".join(pages.file_page_digests(f[0], file_content(content),
                                                          offset, m)))
        elif kind == "zero":
            parts.append(ZERO * run[1])
        elif kind == "digests":
            parts.append(run[1])
        else:
            _, addr, data, unreadable, offset, f, content = run
            content = None if content is None else file_content(content)
            whole_file = content is not None and not unreadable and \
                pages.file_pages(f[0], content, offset, data)
            if whole_file:
                parts.append(b"".join(whole_file))
            else:
                to_name.append((len(parts), run))
                parts.append(None)
    named = name_runs([(run[1], run[2]) for _, run in to_name], unchanged)
    for (at, run), (names, changed) in zip(to_name, named):
        _, addr, data, unreadable, offset, f, content = run
        if unreadable:
            names = bytearray(names)
            for i in unreadable:
                names[16 * i:16 * i + 16] = UNREADABLE
            names = bytes(names)
            changed = [i for i in changed if i not in unreadable]
        if pages is not None:
            pages.add_pages(names, data, changed, None if content is None else
                            (f[0], offset, file_content(content)))
        parts[at] = names
    return b"".join(parts)


class Snapshot:
    """What a checkpoint holds of a stopped tracee: snapshot() takes what needs ptrace, read()
    the rest (which any thread could do); finish() turns it into the checkpoint record
    without the tracee."""

    def __init__(self, pid: int, record: dict, xstate: bytes, brk: int | None,
                 unchanged: UnchangedPages | None):
        """brk: None right after an exec (it is then the layout's start_brk)."""
        self.pid, self.record, self.xstate, self.brk = pid, record, xstate, brk
        self.unchanged = unchanged
        self.memory: MemorySnapshot | None = None
        self.files = 0      # files.jsonl entries (and blobs) it may name: written before it

    @property
    def bytes(self) -> int:
        return self.memory.bytes if self.memory is not None else 0

    def read(self, mapped_files: dict | None = None, file_unchanged=None, full=None) -> bool:
        """Read the tracee's mappings, memory, resource limits and personality, and its
        address-space bounds from /proc/PID/stat, which also shows it still in its stop: then
        everything was read there. False if it was not (killed meanwhile: the checkpoint is
        not written). mapped_files: (dev, inode) -> (blob, content or None, files.jsonl
        index) of the files the trace stores: a region mapping one names it (restore maps the
        file's content there), and pages equal to it are stored as references into its blob.
        file_unchanged, full: as read_memory's."""
        pid, mapped_files = self.pid, mapped_files or {}
        try:
            mem = TraceeMemory(pid)
        except OSError:
            if still_stopped(pid):
                raise
            return False
        try:
            attributes = task_attributes(pid)
            maps = exec_image.read_maps(pid)
            for m in maps:
                f = mapped_files.get((m["dev"], m["inode"])) if m["inode"] else None
                if f is not None:
                    m["file"] = f[2]
            memory = read_memory(mem, maps, mapped_files, file_unchanged, full)
            state, mm = read_mm_layout(pid, self.brk)
            if self.brk is None:
                mm["brk"] = mm["start_brk"]
        except (OSError, NativeError):
            if still_stopped(pid):
                raise
            return False
        finally:
            mem.close()
        if state != "t":
            return False
        self.memory = memory
        self.record.update(mm=mm, regions=memory.regions, **attributes)
        return True


def still_stopped(pid: int) -> bool:
    try:
        return read_mm_layout(pid, 0)[0] == "t"
    except (OSError, ValueError, IndexError):
        return False


def snapshot(pid: int, *, event: int, gadget: int, unchanged: UnchangedPages | None = None,
             parked_mask: int | None = None, trap: str = "none",
             blocked_mask: int | None = None, process: int = 0,
             actions_set: int = 0, after_exec: bool = False) -> Snapshot:
    """The part of a checkpoint that needs the tracer's thread, of the tracee stopped at a
    syscall-exit stop with no signal pending, as replay restores it to run from `event` of
    process `process`'s stream on; Snapshot.read takes the rest. parked_mask: the tracee is
    parked before its exit (rrv_record_park_for_exit) with every signal blocked meanwhile,
    and this is its own mask. blocked_mask: every signal is blocked meanwhile (a child's
    birth with a signal already pending), and this is its own mask. actions_set: the signals
    whose action the process set since its exec (Injector.signal_state_and_brk). after_exec: the
    process has run nothing since its exec: its signal state and brk follow from the exec's
    rules (inject.exec_signal_state; brk is the layout's start_brk), no syscall injected."""
    regs = getregs(pid)
    xstate = read_xstate(pid)
    signals = exec_signal_state(pid) if after_exec else None
    brk = None                  # (Snapshot.read: start_brk)
    if signals is None:
        mem = TraceeMemory(pid)
        try:
            signals, brk = Injector(pid, gadget, mem).task_state(actions_set)
        finally:
            mem.close()
    if parked_mask is not None or blocked_mask is not None:
        signals["mask"] = parked_mask if parked_mask is not None else blocked_mask
    record = {"event": event, "process": process, "tid": pid, "regs": regs, "gadget": gadget,
              "fpu_digest": lib.rrv_fpu_digest_of(xstate, len(xstate)), "signals": signals}
    if parked_mask is not None:
        record["before_exit"] = True
    record["trap"] = trap
    return Snapshot(pid, record, xstate, brk, unchanged)


def finish(snap: Snapshot, writer, pages) -> dict:
    """Digest and store a snapshot's pages and write its checkpoint; returns the record."""
    writer.wait_for_files(snap.files)
    pagemap = digest_memory(snap.memory, pages, snap.unchanged)
    # every page this checkpoint names is in pages.idx before the checkpoint is
    xstate, pagemap_blob = pages.flush(extra=[snap.xstate, pagemap])
    ckpt = dict(snap.record, xstate=xstate.hex(), pagemap=pagemap_blob.hex(),
                pages=len(pagemap) // 16)
    writer.add_checkpoint(ckpt)
    return ckpt

