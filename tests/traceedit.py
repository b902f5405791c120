"""Test helper: rewrite a trace's events (to make a replay diverge on purpose), keeping the
trace otherwise valid: frames re-compressed, index and hashes rebuilt."""
from __future__ import annotations

import json
import os

import zstandard

from rrverify import events as E
from rrverify.trace import (INDEX_MAGIC, INDEX_RECORD, Trace, checkpoint_path, file_hash,
                            frame_hash, integrity_of)


def rehash(trace_dir) -> None:
    """After an edit: every checkpoint's hash in checkpoints.jsonl and the manifest's
    integrity record say what the files now hold (a lie the hashes cannot catch)."""
    d = str(trace_dir)
    index = os.path.join(d, "checkpoints.jsonl")
    with open(index) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for row in rows:
        p = checkpoint_path(d, row["id"])
        if os.path.isfile(p):
            with open(p, "rb") as f:
                row["blake2b"] = file_hash(f.read())
    with open(index, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    mpath = os.path.join(d, "manifest.json")
    with open(mpath) as f:
        m = json.load(f)
    if "integrity" in m:
        m["integrity"] = integrity_of(d)
    with open(mpath, "w") as f:
        json.dump(m, f, indent=1, sort_keys=True)


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
    rehash(trace_dir)


def nth_event(trace_dir, predicate, n=0) -> E.Event:
    """The n-th event (0-based) for which predicate holds."""
    seen = 0
    for ev in Trace(str(trace_dir)).events():
        if predicate(ev):
            if seen == n:
                return ev
            seen += 1
    raise LookupError("no such event")
