"""--ship: traces for clusters without a shared filesystem. The driver sends each worker, via
Ray's object store, exactly what its segment reads: the small shared tables once (one object
reference for all), then per segment the event frames it replays and the blobs it restores,
maps or compares. The worker lays them out as a trace directory of its own."""
from __future__ import annotations

import glob
import os
import tempfile

from .. import events as E
from ..checkpoints.pages import PageStoreReader
from ..recorder.syscalls import NUMBERS
from ..errors import TraceError
from ..trace import Trace, blob_path

SHARED = ("manifest.json", "events.idx", "files.jsonl", "checkpoints.jsonl", "pages.idx")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise TraceError(f"{os.path.dirname(path)}: {os.path.basename(path)} is missing") from None


def shared_bundle(trace: Trace) -> dict[str, bytes]:
    files = {name: _read(os.path.join(trace.path, name)) for name in SHARED}
    for p in glob.glob(os.path.join(trace.path, "checkpoints", "*.json")):
        files[os.path.join("checkpoints", os.path.basename(p))] = _read(p)
    files["events.zst.size"] = str(os.path.getsize(os.path.join(trace.path, "events.zst"))).encode()
    return files


def segment_bundle(trace: Trace, pages: PageStoreReader, k: int, first: int, end: int) -> dict:
    """Frames holding events [first, end] (one past the end: the replayer peeks ahead) and the
    blobs segment k needs."""
    frames = [f for f in trace.frames if f.first_event <= end and f.first_event + f.events > first]
    blobs: set[bytes] = set()
    # Checkpoint k is restored; k+1 is compared with, and a page that differs there is read
    # to see whether only the cores' APIC ids explain it: both need their pages.
    for c in range(k, min(k + 2, len(trace.checkpoints))):
        ck = trace.checkpoint(c)
        blobs |= {ck["xstate_blob"], ck["pagemap_blob"]}
        pagemap = trace.blob(ck["pagemap_blob"])
        blobs |= pages.blobs_for({pagemap[i:i + 16] for i in range(0, len(pagemap), 16)})
    files = trace.files
    chunks = []
    with open(os.path.join(trace.path, "events.zst"), "rb") as f:
        for frame in frames:
            f.seek(frame.offset)
            comp = f.read(frame.compressed)
            chunks.append((frame.offset, comp))
            for ev in E.iter_events(trace.decode_frame(frame, comp), frame.first_event):
                if not first <= ev.index <= end:
                    continue
                blobs |= {w.blob for w in ev.writes if w.blob is not None}
                if ev.kind == E.SYSCALL and ev.nr == NUMBERS["mmap"] and ev.aux:
                    if ev.aux > len(files):
                        raise TraceError(f"{trace.path}: event {ev.index} maps file "
                                         f"#{ev.aux - 1}, which files.jsonl does not have")
                    blobs.add(bytes.fromhex(files[ev.aux - 1]["blob"]))
    blob_files = {}
    for d in blobs:
        p = blob_path(trace.path, d)
        if os.path.exists(p):       # a missing blob stays missing: the worker reports it
            blob_files[d.hex()] = _read(p)
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
