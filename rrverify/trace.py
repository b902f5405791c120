"""The trace directory: the only interface between recording and replay.

Layout (docs/trace-format.md is the contract):
  manifest.json   what was recorded, where, and whether the recording is complete
  events.zst      event records in independently decompressible zstd frames
  events.idx      one fixed-size record per frame: where it is, its events, its hash
  files.jsonl     identities of the files the tracee mapped, one JSON object per line
  blobs/xx/<hex>.zst  content-addressed store: BLAKE2b-256 of the content names the file

Everything read from a trace is bounded and validated; failures raise TraceError with the
trace path and what is wrong.
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import struct
import threading
import uuid as uuidlib
from dataclasses import dataclass

import zstandard

from .errors import TraceError

FORMAT_NAME = "rrverify-trace"
FORMAT_VERSION = 1
INDEX_MAGIC = b"RRVEIDX1"
INDEX_RECORD = struct.Struct("<QIIQII16s")
MAX_FRAME_RAW = 64 << 20         # a frame larger than this is corrupt, not big
MAX_BLOB = 4 << 30
MAX_MANIFEST = 16 << 20


def blob_path(root: str, digest: bytes) -> str:
    """Where blob `digest` lives under a trace directory (never outside it: the name is hex)."""
    h = digest.hex()
    return os.path.join(root, "blobs", h[:2], h + ".zst")


def blob_digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def frame_hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _atomic_write(path: str, data: bytes, sync: bool = True) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())
    os.replace(tmp, path)


def checkpoint_path(trace_dir: str, n: int) -> str:
    return os.path.join(trace_dir, "checkpoints", f"{n:06d}.json")


def read_records(path: str, magic: bytes, record: struct.Struct, complete: bool,
                 what: str) -> list[tuple]:
    """A binary index: an 8-byte magic, then fixed-size records. A torn last record is what an
    interrupted recording leaves: dropped, but only in an incomplete trace."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != magic:
        raise TraceError(f"{path}: corrupted {what} (bad magic)")
    body = data[8:]
    whole = len(body) // record.size * record.size
    if whole != len(body) and complete:
        raise TraceError(f"{path}: truncated {what}")
    return [record.unpack_from(body, off) for off in range(0, whole, record.size)]


@dataclass
class Frame:
    number: int
    offset: int
    compressed: int
    raw: int
    first_event: int
    events: int
    hash: bytes


class TraceWriter:
    """Appends frames as they come, so a recorder killed midway leaves a readable prefix.

    Frames are compressed and written by a background thread kept off the CPU the tracer and
    tracee are pinned to (avoid_cpu): compression then overlaps recording instead of adding to
    every event's cost."""

    def __init__(self, path: str, manifest: dict, avoid_cpu: int | None = None):
        self.path = path
        if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
            raise TraceError(f"{path}: already exists; choose another trace directory")
        os.makedirs(os.path.join(path, "blobs"), exist_ok=True)
        self.manifest = dict(manifest, format=FORMAT_NAME, version=FORMAT_VERSION,
                             uuid=str(uuidlib.uuid4()), complete=False)
        self._write_manifest()
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self._events_fd = os.open(os.path.join(path, "events.zst"), flags, 0o644)
        self._index_fd = os.open(os.path.join(path, "events.idx"), flags, 0o644)
        self._files_fd = os.open(os.path.join(path, "files.jsonl"), flags, 0o644)
        self._ckpt_fd = os.open(os.path.join(path, "checkpoints.jsonl"), flags, 0o644)
        self.checkpoints = 0
        write_all(self._index_fd, INDEX_MAGIC)
        # Level 1 for blobs (mapped files, pages): recording-time cost matters more here
        # than the last few percent of size.
        self._compressor = zstandard.ZstdCompressor(level=1, write_checksum=True,
                                                    write_content_size=True)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._pending_events = 0
        self.offset = 0
        self.events = 0
        self.frames = 0
        self.raw_bytes = 0
        self.blob_bytes = 0
        self.files = 0
        self._frames_out: queue.Queue = queue.Queue(maxsize=16)
        self._writer_error: BaseException | None = None
        self._writer = threading.Thread(target=self._write_frames, args=(avoid_cpu,),
                                         name="rrverify-frame-writer", daemon=True)
        self._writer.start()

    def _write_manifest(self) -> None:
        _atomic_write(os.path.join(self.path, "manifest.json"),
                      json.dumps(self.manifest, indent=1, sort_keys=True).encode() + b"\n")

    def add_events(self, raw: bytes, count: int) -> None:
        self._pending.append(raw)
        self._pending_bytes += len(raw)
        self._pending_events += count

    def cut_frame(self) -> None:
        if self._writer_error is not None:
            raise TraceError(f"{self.path}: cannot write the trace: {self._writer_error}")
        if not self._pending_events:
            return
        raw = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._frames_out.put((raw, self.events, self._pending_events))
        self.events += self._pending_events
        self.raw_bytes += self._pending_bytes
        self._pending_bytes = 0
        self.frames += 1
        self._pending.clear()
        self._pending_events = 0

    def _write_frames(self, avoid_cpu: int | None) -> None:
        if avoid_cpu is not None:
            others = os.sched_getaffinity(0) - {avoid_cpu}
            if others:
                os.sched_setaffinity(0, others)   # this thread only
        compressor = zstandard.ZstdCompressor(level=3, write_checksum=True,
                                              write_content_size=True)
        while (item := self._frames_out.get()) is not None:
            if self._writer_error is not None:
                continue
            raw, first, count = item
            try:
                comp = compressor.compress(raw)
                write_all(self._events_fd, comp)
                write_all(self._index_fd, INDEX_RECORD.pack(self.offset, len(comp), len(raw),
                                                             first, count, 0, frame_hash(comp)))
                self.offset += len(comp)
            except OSError as e:
                self._writer_error = e

    def put_blob(self, data: bytes, digest: bytes | None = None) -> bytes:
        """Store data once under its BLAKE2b-256 (digest: when the caller just computed it)."""
        digest = digest or blob_digest(data)
        p = blob_path(self.path, digest)
        if not os.path.exists(p):
            os.makedirs(os.path.dirname(p), exist_ok=True)
            comp = self._compressor.compress(data)
            with open(p + ".tmp", "wb") as f:
                f.write(comp)
            os.replace(p + ".tmp", p)
            self.blob_bytes += len(comp)
        return digest

    def add_file(self, identity: dict) -> int:
        index = self.files
        line = json.dumps(dict(identity, index=index), sort_keys=True) + "\n"
        write_all(self._files_fd, line.encode())
        self.files += 1
        return index

    def add_checkpoint(self, ckpt: dict) -> int:
        """Write checkpoint number len(checkpoints) and index it (the index line last, so a
        reader never finds an index entry without its checkpoint)."""
        n = self.checkpoints
        ckpt = dict(ckpt, id=n)
        os.makedirs(os.path.join(self.path, "checkpoints"), exist_ok=True)
        _atomic_write(checkpoint_path(self.path, n),
                      json.dumps(ckpt, sort_keys=True).encode() + b"\n", sync=False)
        line = json.dumps({"id": n, "event": ckpt["event"]}) + "\n"
        write_all(self._ckpt_fd, line.encode())
        self.checkpoints += 1
        return n

    def close(self, *, complete: bool, end: dict, stats: dict) -> None:
        try:
            self.cut_frame()
        finally:
            self._frames_out.put(None)
            self._writer.join()
        if self._writer_error is not None:
            complete = False
            end = dict(end, reason=f"cannot write the trace: {self._writer_error}")
        for fd in (self._events_fd, self._index_fd, self._files_fd, self._ckpt_fd):
            os.fsync(fd)
            os.close(fd)
        self.manifest.update(complete=complete, end=end,
                             stats=dict(stats, events=self.events, frames=self.frames,
                                        event_bytes_raw=self.raw_bytes,
                                        event_bytes_compressed=self.offset,
                                        blob_bytes=self.blob_bytes, mapped_files=self.files,
                                        checkpoints=self.checkpoints))
        self._write_manifest()
        if self._writer_error is not None:
            raise TraceError(f"{self.path}: cannot write the trace: {self._writer_error}")


class Trace:
    """A trace opened for reading. Construction validates the manifest and the frame index."""

    def __init__(self, path: str):
        self.path = path
        if not os.path.isdir(path):
            raise TraceError(f"{path}: no such trace directory")
        mpath = os.path.join(path, "manifest.json")
        if not os.path.isfile(mpath):
            raise TraceError(f"{path}: not an rrverify trace (no manifest.json)")
        if os.path.getsize(mpath) > MAX_MANIFEST:
            raise TraceError(f"{mpath}: implausibly large manifest")
        try:
            with open(mpath, "rb") as f:
                m = json.loads(f.read())
        except (ValueError, UnicodeDecodeError) as e:
            raise TraceError(f"{mpath}: corrupted manifest ({e})") from None
        if not isinstance(m, dict) or m.get("format") != FORMAT_NAME:
            raise TraceError(f"{path}: not an rrverify trace (manifest format is "
                             f"{m.get('format') if isinstance(m, dict) else m!r})")
        version = m.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise TraceError(f"{mpath}: corrupted manifest (format version {version!r})")
        if version > FORMAT_VERSION:
            raise TraceError(f"{path}: trace format version {version} is newer than this rrverify "
                             f"reads (version {FORMAT_VERSION}); upgrade rrverify")
        for key, typ in (("command", list), ("exe", str), ("env", list), ("cwd", str),
                         ("complete", bool), ("host", dict)):
            if not isinstance(m.get(key), typ):
                raise TraceError(f"{mpath}: corrupted manifest (field {key!r} missing or invalid)")
        rl = m.get("rlimits", [])
        if not isinstance(rl, list) or not all(
                isinstance(x, list) and len(x) == 3 and isinstance(x[0], str) and
                all(isinstance(v, int) and not isinstance(v, bool) for v in x[1:]) for x in rl):
            raise TraceError(f"{mpath}: corrupted manifest (field 'rlimits' invalid)")
        self.manifest = m
        self.complete = m["complete"]
        self.frames = self._read_index()
        self.event_count = sum(f.events for f in self.frames)
        stats = m.get("stats") or {}
        if self.complete and (stats.get("events") != self.event_count
                              or stats.get("frames") != len(self.frames)):
            raise TraceError(f"{path}: truncated trace: the manifest records {stats.get('events')} "
                             f"events in {stats.get('frames')} frames, the index holds "
                             f"{self.event_count} in {len(self.frames)}")
        self._dctx = zstandard.ZstdDecompressor()
        self._files = None
        self._checkpoints = None

    def _read_index(self) -> list[Frame]:
        ipath = os.path.join(self.path, "events.idx")
        epath = os.path.join(self.path, "events.zst")
        if not os.path.isfile(ipath) or not os.path.isfile(epath):
            raise TraceError(f"{self.path}: truncated trace (events.idx or events.zst missing)")
        records = read_records(ipath, INDEX_MAGIC, INDEX_RECORD, self.complete, "frame index")
        esize = os.path.getsize(epath)
        frames, expect_offset, expect_event = [], 0, 0
        for n, (o, c, r, first, count, _res, h) in enumerate(records):
            if o != expect_offset or first != expect_event or r > MAX_FRAME_RAW or count == 0:
                raise TraceError(f"{ipath}: corrupted frame index at frame {n}")
            if o + c > esize:
                if self.complete:
                    raise TraceError(f"{epath}: truncated (frame {n} ends past the file's end)")
                break  # an interrupted recording: its last frame never reached the disk
            frames.append(Frame(n, o, c, r, first, count, h))
            expect_offset, expect_event = o + c, first + count
        return frames

    def read_frame(self, frame: Frame) -> bytes:
        with open(os.path.join(self.path, "events.zst"), "rb") as f:
            f.seek(frame.offset)
            return self.decode_frame(frame, f.read(frame.compressed))

    def decode_frame(self, frame: Frame, comp: bytes) -> bytes:
        """A frame's events from its compressed bytes, checked against the index."""
        if len(comp) != frame.compressed:
            raise TraceError(f"{self.path}: events.zst truncated in frame {frame.number}")
        if frame_hash(comp) != frame.hash:
            raise TraceError(f"{self.path}: events frame {frame.number} is corrupted "
                             f"(hash mismatch)")
        try:
            raw = self._dctx.decompress(comp, max_output_size=frame.raw)
        except zstandard.ZstdError as e:
            raise TraceError(f"{self.path}: events frame {frame.number} is corrupted ({e})") from None
        if len(raw) != frame.raw:
            raise TraceError(f"{self.path}: events frame {frame.number} has the wrong size")
        return raw

    def iter_frames(self):
        for frame in self.frames:
            yield frame, self.read_frame(frame)

    def events(self):
        from .events import iter_events
        for frame, raw in self.iter_frames():
            yield from iter_events(raw, frame.first_event)

    def blob(self, digest: bytes, verify: bool = True) -> bytes:
        """A blob's content, checked against its name unless the caller checks every piece
        it uses itself (verify=False: the page store verifies each page's own digest)."""
        hexd = digest.hex()
        p = blob_path(self.path, digest)
        try:
            with open(p, "rb") as f:
                comp = f.read()
            data = self._dctx.decompress(comp, max_output_size=MAX_BLOB)
        except FileNotFoundError:
            raise TraceError(f"{self.path}: blob {hexd} is missing") from None
        except zstandard.ZstdError as e:
            raise TraceError(f"{self.path}: blob {hexd} is corrupted ({e})") from None
        if verify and blob_digest(data) != digest:
            raise TraceError(f"{self.path}: blob {hexd} is corrupted (hash mismatch)")
        return data

    def _jsonl(self, name: str, key: str, required: dict) -> list[dict]:
        """An append-only JSON-lines table whose n-th line has key == n. A torn last line is
        what an interrupted recording leaves: tolerated only in an incomplete trace."""
        p = os.path.join(self.path, name)
        try:
            with open(p, "rb") as f:
                lines = f.read(MAX_MANIFEST).split(b"\n")
        except FileNotFoundError:
            raise TraceError(f"{self.path}: {name} is missing") from None
        rows = []
        for n, line in enumerate(lines):
            if not line:
                continue
            try:
                row = json.loads(line)
            except ValueError:
                if n == len(lines) - 1 and not self.complete:
                    break
                raise TraceError(f"{p}: corrupted at line {n + 1}") from None
            if not isinstance(row, dict) or row.get(key) != len(rows) or any(
                    not isinstance(row.get(k), t) for k, t in required.items()):
                raise TraceError(f"{p}: corrupted at line {n + 1}")
            rows.append(row)
        return rows

    @property
    def files(self) -> list[dict]:
        if self._files is None:
            self._files = self._jsonl("files.jsonl", "index",
                                      {"path": str, "size": int, "blob": str})
        return self._files

    @property
    def checkpoints(self) -> list[dict]:
        """The checkpoint index: [{"id", "event"}], events strictly increasing."""
        if self._checkpoints is None:
            rows = self._jsonl("checkpoints.jsonl", "id", {"event": int})
            if not self.complete:
                # An interrupted recording may have indexed checkpoints whose events never
                # reached the disk: replay could not go on from them.
                rows = [r for r in rows if r["event"] < self.event_count]
            last = 0
            for row in rows:
                if row["event"] <= last or row["event"] > self.event_count:
                    raise TraceError(f"{self.path}: checkpoints.jsonl: checkpoint {row['id']} "
                                     f"is at event {row['event']}, out of order or past the end")
                last = row["event"]
            self._checkpoints = rows
        return self._checkpoints

    def checkpoint(self, n: int) -> dict:
        from .checkpoints.model import load_checkpoint
        return load_checkpoint(self, n)
