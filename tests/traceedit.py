"""Test helper: rewrite a trace's events (to make a replay diverge on purpose), keeping the
trace otherwise valid: frames re-compressed, index and hashes rebuilt."""
from __future__ import annotations

import json
import os

import zstandard

from rrverify import events as E
from rrverify.trace import (INDEX_MAGIC, INDEX_RECORD, Trace, checkpoint_path, file_hash,
                            frame_hash, integrity_of)


def _replace(path: str, data: bytes) -> None:
    """A new file in place of the old (a trace copied as hard links keeps its original)."""
    with open(path + ".new", "wb") as f:
        f.write(data)
    os.replace(path + ".new", path)


def rehash(trace_dir) -> None:
    """After an edit: every checkpoint's hash in checkpoints.jsonl and the manifest's
    integrity record say what the files now hold (a lie the hashes cannot catch). Lines and
    manifests that are no longer what they were are left as they are."""
    d = str(trace_dir)
    index = os.path.join(d, "checkpoints.jsonl")
    with open(index) as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        row = _json(line)
        p = checkpoint_path(d, row["id"]) if isinstance(row, dict) and \
            isinstance(row.get("id"), int) else ""
        if os.path.isfile(p):
            with open(p, "rb") as f:
                row["sha256"] = file_hash(f.read())
            lines[i] = json.dumps(row)
    _replace(index, "".join(line + "\n" for line in lines).encode())
    mpath = os.path.join(d, "manifest.json")
    with open(mpath, "rb") as f:
        m = _json(f.read())
    if isinstance(m, dict) and "integrity" in m:
        m["integrity"] = integrity_of(d)
        _replace(mpath, json.dumps(m, indent=1, sort_keys=True).encode())


def _json(text):
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def rewrite_events(trace_dir, edit) -> None:
    """edit(event) -> event (modified in place or replaced); called for every event."""
    trace = Trace(str(trace_dir))
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=True)
    frames = []
    for frame, raw in trace.iter_frames():
        out = []
        for ev in E.iter_events(raw, frame.first_event):
            ev.process = frame.process
            out.append(E.reencode(edit(ev)))
        frames.append((frame, b"".join(out)))
    offset, zst, idx = 0, [], [INDEX_MAGIC]
    for frame, raw in frames:
        comp = cctx.compress(raw)
        zst.append(comp)
        idx.append(INDEX_RECORD.pack(offset, len(comp), len(raw), frame.first_event,
                                     frame.events, frame.process, frame_hash(comp)))
        offset += len(comp)
    _replace(os.path.join(trace_dir, "events.zst"), b"".join(zst))
    _replace(os.path.join(trace_dir, "events.idx"), b"".join(idx))
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


def put_blob(trace_dir, data: bytes) -> bytes:
    """Store a blob in the trace as the recorder does; returns its name."""
    from rrverify.trace import blob_digest, blob_path
    digest = blob_digest(data)
    path = blob_path(str(trace_dir), digest)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(zstandard.ZstdCompressor(write_checksum=True, write_content_size=True).compress(data))
    return digest
