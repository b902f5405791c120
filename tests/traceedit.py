"""Test helper: rewrite a trace's events (to make a replay diverge on purpose), keeping the
trace otherwise valid: frames re-compressed, index and hashes rebuilt."""
from __future__ import annotations

import os

import zstandard

from rrverify import events as E
from rrverify.trace import INDEX_MAGIC, INDEX_RECORD, Trace, frame_hash


def rewrite_events(trace_dir, edit) -> None:
    """edit(event) -> event (modified in place or replaced); called for every event."""
    trace = Trace(str(trace_dir))
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=True)
    frames = []
    for frame, raw in trace.iter_frames():
        out = b"".join(E.reencode(edit(ev)) for ev in E.iter_events(raw, frame.first_event))
        frames.append((frame, out))
    offset = 0
    with open(os.path.join(trace_dir, "events.zst"), "wb") as ev_f, \
            open(os.path.join(trace_dir, "events.idx"), "wb") as idx_f:
        idx_f.write(INDEX_MAGIC)
        for frame, raw in frames:
            comp = cctx.compress(raw)
            ev_f.write(comp)
            idx_f.write(INDEX_RECORD.pack(offset, len(comp), len(raw), frame.first_event,
                                          frame.events, 0, frame_hash(comp)))
            offset += len(comp)


def nth_event(trace_dir, predicate, n=0) -> E.Event:
    """The n-th event (0-based) for which predicate holds."""
    seen = 0
    for ev in Trace(str(trace_dir)).events():
        if predicate(ev):
            if seen == n:
                return ev
            seen += 1
    raise LookupError("no such event")
