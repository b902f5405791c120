"""--ship: traces for clusters without a shared filesystem. The driver sends each worker, via
Ray's object store, exactly what its segment reads: the small shared tables once (one object
reference for all), then per segment the event frames it replays and the blobs it restores,
maps or compares. The worker lays them out as a trace directory of its own."""
from __future__ import annotations

import os
import tempfile

from .. import events as E
from ..checkpoints.pages import PageStoreReader
from ..events import MMAP_ZERO_DEVICE
from ..recorder.syscalls import NUMBERS
from ..errors import TraceError
from ..trace import (MAX_INDEX, MAX_MANIFEST, Trace, blob_path, checkpoint_name,
                     open_trace_file, read_trace_file)

SHARED = ("manifest.json", "events.idx", "files.jsonl", "checkpoints.jsonl", "pages.idx",
          "processes.jsonl")


def shared_bundle(trace: Trace) -> dict[str, bytes]:
    """The small tables, read as a reader reads them (regular files, capped, checked against
    the manifest's integrity), and every indexed checkpoint file (checked by the worker)."""
    files = {"manifest.json": read_trace_file(trace.path, "manifest.json", MAX_MANIFEST)}
    for name in SHARED[1:]:
        files[name] = trace.read_file(name, MAX_INDEX, name,
                                      f"{trace.path}: {name} is missing")
    for n in range(len(trace.checkpoints)):
        try:
            files[checkpoint_name(n)] = read_trace_file(trace.path, checkpoint_name(n),
                                                        MAX_MANIFEST)
        except TraceError:
            pass    # damage stays the segments' own: segment_bundle loads theirs and says why
    fd = open_trace_file(trace.path, "events.zst")
    try:
        files["events.zst.size"] = str(os.fstat(fd).st_size).encode()
    finally:
        os.close(fd)
    return files


def segment_bundle(trace: Trace, pages: PageStoreReader, k: int, first: int, end: int) -> dict:
    """Frames of segment k's process holding events [first, end] (one past the end: the
    replayer peeks ahead) and the blobs segment k needs."""
    from ..replayer.replay import segment_checkpoints
    stream = trace.stream(trace.checkpoints[k]["process"])
    frames = [f for f in stream.frames
              if f.first_event <= end and f.first_event + f.events > first]
    blobs: set[bytes] = set()
    # Checkpoint k is restored; k+1 is compared with, and a page that differs there is read
    # to see whether only the cores' APIC ids explain it: both need their pages.
    files = trace.files
    _, compared_with = segment_checkpoints(trace, k)
    for c in (k,) if compared_with is None else (k, compared_with):
        ck = trace.checkpoint(c)
        blobs |= {ck["xstate_blob"], ck["pagemap_blob"]}
        pagemap = trace.blob(ck["pagemap_blob"])
        blobs |= pages.blobs_for({pagemap[i:i + 16] for i in range(0, len(pagemap), 16)})
        for r in ck["regions"]:         # restore maps the files its regions mapped
            if "file" in r:
                if r["file"] >= len(files):
                    raise TraceError(f"{trace.path}: checkpoint {c} maps file #{r['file']}, "
                                     f"which files.jsonl does not have")
                blobs.add(bytes.fromhex(files[r["file"]]["blob"]))
    chunks = []
    fd = open_trace_file(trace.path, "events.zst")
    try:
        for frame in frames:
            comp = trace.read_frame_bytes(frame, fd)
            chunks.append((frame.offset, comp))
            for ev in E.iter_events(trace.decode_frame(frame, comp), frame.first_event):
                if not first <= ev.index <= end:
                    continue
                blobs |= {w.blob for w in ev.writes if w.blob is not None}
                if (ev.kind == E.SYSCALL and ev.nr == NUMBERS["mmap"] and ev.aux
                        and ev.aux != MMAP_ZERO_DEVICE):
                    if ev.aux > len(files):
                        raise TraceError(f"{trace.path}: event {ev.index} maps file "
                                         f"#{ev.aux - 1}, which files.jsonl does not have")
                    blobs.add(bytes.fromhex(files[ev.aux - 1]["blob"]))
    finally:
        os.close(fd)
    blob_files = {}
    for d in blobs:
        if os.path.lexists(blob_path(trace.path, d)):   # a missing blob stays missing: the
            blob_files[d.hex()] = trace.blob_file(d)      # worker reports it
    return {"frames": chunks, "blobs": blob_files}


def materialize(shared: dict[str, bytes], bundle: dict, root: str | None = None) -> str:
    """Write a shipped trace into a local directory (reused across this worker's segments)."""
    root = root or tempfile.mkdtemp(prefix="rrverify-shipped-")
    os.makedirs(os.path.join(root, "checkpoints"), exist_ok=True)
    if not os.path.exists(os.path.join(root, "manifest.json")):
        for name, data in shared.items():
            if name == "events.zst.size":
                continue
            with open(os.path.join(root, name), "wb") as f:
                f.write(data)
        with open(os.path.join(root, "events.zst"), "wb") as f:
            f.truncate(int(shared["events.zst.size"]))    # sparse: only shipped frames hold data
    with open(os.path.join(root, "events.zst"), "r+b") as f:
        for offset, data in bundle["frames"]:
            f.seek(offset)
            f.write(data)
    for h, data in bundle["blobs"].items():
        p = blob_path(root, bytes.fromhex(h))
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    return root
