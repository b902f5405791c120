"""`rrverify check TRACE`: read every byte of a trace that replay may trust and check every
hash on the way (for CI, before a trace is uploaded). The first problem is a TraceError."""
from __future__ import annotations

from . import events as E
from .checkpoints.model import checkpoint_pagemap
from .checkpoints.pages import UNREADABLE, ZERO, PageStoreReader
from .errors import TraceError
from .exec_image import recorded_file
from .recorder.syscalls import NUMBERS
from .trace import Trace


def check(path: str) -> str:
    """The one-line summary of a trace whose every hash holds."""
    trace = Trace(path)                       # the manifest, events.idx and its integrity
    blobs: set[bytes] = set()

    def blob(digest: bytes, length: int | None = None, what: str = "") -> None:
        if digest not in blobs:
            data = trace.blob(digest)         # decompressed and checked against its name
            if length is not None and len(data) != length:
                raise TraceError(f"{trace.path}: blob {digest.hex()} holds {len(data)} bytes, "
                                 f"{what} says {length}")
            blobs.add(digest)

    files = trace.files
    procs = trace.processes         # every frame's process is one of them
    events = 0
    for frame in trace.frames:
        raw = trace.read_frame(frame)
        pos, index = 0, frame.first_event
        where = f"process {procs[frame.process]['pid']}'s event"
        while pos < len(raw):
            try:
                ev = E.decode_at(raw, pos, index)
            except TraceError as e:
                raise TraceError(f"{trace.path}: process {procs[frame.process]['pid']}: {e}") \
                    from None
            for w in ev.writes:
                if w.blob is not None:
                    blob(w.blob, w.length, f"{where} {index}")
            for f in _files_named(ev):
                if not 0 <= f < len(files):
                    raise TraceError(f"{trace.path}: {where} {index} names mapped file #{f}, "
                                     f"which files.jsonl does not have")
            pos += ev.size
            index += 1
        if index - frame.first_event != frame.events:
            raise TraceError(f"{trace.path}/events.zst: events frame {frame.number} holds "
                             f"{index - frame.first_event} events, events.idx says {frame.events}")
        events += frame.events
    for f in files:     # the whole file, or a range of it that fits its size
        blob(bytes.fromhex(f["blob"]), None if "offset" in f else f["size"],
             f"files.jsonl entry {f['index']}")
        recorded_file(trace, f["index"])
    pages = PageStoreReader(trace)
    if pages.duplicates:
        raise TraceError(f"{trace.path}/pages.idx: {pages.duplicates} pages have more than one "
                         f"record")
    for _kind, digest, _where in pages.sources.values():
        blob(digest)
    checked: set[bytes] = set()
    for digest in pages.sources:
        pages.page(digest)
        checked.add(digest)
    for n in range(len(trace.checkpoints)):
        ck = trace.checkpoint(n)              # its file's hash, then every field
        blob(ck["xstate_blob"])
        pagemap = checkpoint_pagemap(trace, ck)
        blobs.add(ck["pagemap_blob"])
        for i in range(0, len(pagemap), 16):
            d = pagemap[i:i + 16]
            if d not in checked and d not in (ZERO, UNREADABLE):
                pages.page(d)
                checked.add(d)
    return (f"ok: {len(procs)} process{'es' if len(procs) != 1 else ''}, {events} events, "
            f"{len(trace.frames)} frames, {len(trace.checkpoints)} checkpoints, {len(blobs)} "
            f"blobs, {len(checked)} pages checked")


def _files_named(ev) -> list[int]:
    """The files.jsonl indices an event refers to (a file mmap, the files an exec mapped)."""
    if ev.kind == E.SYSCALL and ev.nr == NUMBERS["mmap"] and ev.aux not in (0, E.MMAP_ZERO_DEVICE):
        return [ev.aux - 1]
    if ev.kind == E.EXEC:
        return [int.from_bytes(ev.extra[i:i + 4], "little") for i in range(0, len(ev.extra) - 3, 4)]
    return []
