"""The trace directory: the only interface between recording and replay.

Layout (docs/trace-format.md is the contract):
  manifest.json   what was recorded, where, and whether the recording is complete
  events.zst      event records in independently decompressible zstd frames
  events.idx      one fixed-size record per frame: where it is, its events, its hash
  files.jsonl     identities of the files the tracee mapped, one JSON object per line
  checkpoints.jsonl, checkpoints/NNNNNN.json   the checkpoint index (with each file's hash)
  pages.idx       the page store's index (checkpoints/pages.py)
  blobs/xx/<hex>.zst  content-addressed store: SHA-256 of the content names the file

A trace is untrusted input: every file is opened by open_trace_file (regular files inside the
trace only), every read is capped, every byte replay trusts is covered by a hash reachable
from the manifest, and failures raise TraceError with the file and what is wrong.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import queue
import struct
import threading
import time
import typing
import uuid as uuidlib
from dataclasses import dataclass

import zstandard

from .analysis_cache import STORED_FILES
from .digests import content_check, digest, short_digest
from .errors import TraceError

FORMAT_NAME = "rrverify-trace"
FORMAT_VERSION = 4
INDEX_MAGIC = b"RRVEIDX1"
INDEX_RECORD = struct.Struct("<QIIQII16s")
MAX_FRAME_RAW = 64 << 20         # a frame larger than this is corrupt, not big
MAX_BLOB = 4 << 30
MAX_MANIFEST = 16 << 20          # the manifest, a checkpoint file, files.jsonl, checkpoints.jsonl
MAX_INDEX = 1 << 30              # events.idx, pages.idx
MAX_BLOB_FILE = MAX_BLOB + (MAX_BLOB >> 7) + (1 << 20)   # zstd never grows data more than this
# The files the final manifest's "integrity" covers (the others carry hashes of their own).
INTEGRITY_FILES = ("events.idx", "pages.idx", "files.jsonl", "checkpoints.jsonl",
                   "processes.jsonl")


def blob_path(root: str, digest: bytes) -> str:
    """Where blob `digest` lives under a trace directory (never outside it: the name is hex)."""
    return os.path.join(root, blob_name(digest))


def blob_name(digest: bytes) -> str:
    h = digest.hex()
    return os.path.join("blobs", h[:2], h + ".zst")


def blob_digest(data: bytes) -> bytes:
    return digest(data)


def file_hash(data: bytes) -> str:
    """What checkpoints.jsonl and the manifest's integrity record of a file's bytes."""
    return blob_digest(data).hex()


def frame_hash(data: bytes) -> bytes:
    return short_digest(data)


def frame_bound(raw: int) -> int:
    """The most bytes zstd can compress `raw` bytes into (a generous ZSTD_compressBound)."""
    return raw + (raw >> 7) + 1024


def is_rlimits(value) -> bool:
    """A list of [RLIMIT_NAME, soft, hard] (-1: unlimited), as the manifest and checkpoints
    hold them."""
    return isinstance(value, list) and all(
        isinstance(x, list) and len(x) == 3 and isinstance(x[0], str) and
        all(is_int(v) and -2**63 <= v < 2**64 for v in x[1:]) for x in value)


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_u64(v) -> bool:
    return is_int(v) and 0 <= v < 2**64


def is_hex_digest(v) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _atomic_write(path: str, data: bytes, sync: bool = True) -> None:
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        _unlink(tmp)   # a full disk: give back what the half-written copy took
        raise


def _write_files(paths: list[str], datas: list) -> None:
    """Write each data to its path whole or not at all (a temporary file of this thread's,
    renamed), in one call that lets the GIL go (rrverify/native/blob_files.c); a missing
    parent directory is made. OSError on the first failure."""
    from ._native import ffi, lib
    names = [ffi.new("char[]", os.fsencode(p)) for p in paths]    # alive through the call
    buffers = [ffi.from_buffer(d) for d in datas]
    rc = lib.rrv_write_files(ffi.new("char *[]", names), ffi.new("uint8_t *[]", buffers),
                             ffi.new("uint64_t[]", [len(d) for d in datas]), len(paths))
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc), paths[0] if len(paths) == 1 else None)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def checkpoint_name(n: int) -> str:
    return os.path.join("checkpoints", f"{n:06d}.json")


def checkpoint_path(trace_dir: str, n: int) -> str:
    return os.path.join(trace_dir, checkpoint_name(n))


# -- reading untrusted files ---------------------------------------------------------------

def open_trace_file(root: str, name: str, missing: str | None = None) -> int:
    """A read-only fd of the regular file `name` inside the trace `root`, or a TraceError.
    A FIFO, a device or a symbolic link in its place, or a directory on its way that leads out
    of the trace, is refused before anything is read (the trace root itself may be reached
    through a symbolic link)."""
    path = os.path.join(root, name)
    sub = os.path.dirname(name)
    if sub:
        real_root = os.path.realpath(root)
        real_sub = os.path.realpath(os.path.join(root, sub))
        if os.path.commonpath([real_root, real_sub]) != real_root:
            raise TraceError(f"{path}: leads out of the trace (through a symbolic link)")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise TraceError(missing or f"{path}: missing") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise TraceError(f"{path}: not a regular file (a symbolic link)") from None
        raise TraceError(f"{path}: cannot open ({e.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise TraceError(f"{path}: not a regular file")
    return fd


def read_fd(fd: int, path: str, cap: int) -> bytes:
    """The whole file, refused if it holds more than cap bytes (whatever its size claims)."""
    chunks, total = [], 0
    while chunk := os.read(fd, min(cap + 1 - total, 1 << 24)):
        chunks.append(chunk)
        total += len(chunk)
        if total > cap:
            raise TraceError(f"{path}: implausibly large (more than {cap} bytes)")
    return b"".join(chunks)


def read_trace_file(root: str, name: str, cap: int, missing: str | None = None) -> bytes:
    fd = open_trace_file(root, name, missing)
    try:
        return read_fd(fd, os.path.join(root, name), cap)
    finally:
        os.close(fd)


def pread_exact(fd: int, offset: int, size: int) -> bytes:
    """size bytes at offset, or fewer at the end of the file."""
    chunks, total = [], 0
    while total < size:
        chunk = os.pread(fd, min(size - total, 1 << 24), offset + total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def load_json(data: bytes, where: str):
    """JSON from a trace; TraceError(where + ": ...") for anything that is not."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:      # UnicodeDecodeError is a ValueError
        raise TraceError(f"{where}: not valid JSON ({type(e).__name__})") from None


def decompress_blob(dctx, comp: bytes, cap: int) -> bytes:
    """One whole zstd frame with its content size, nothing after it (zstandard would
    silently ignore trailing bytes); raises zstandard.ZstdError."""
    size = zstandard.frame_content_size(comp)
    if not 0 <= size <= cap:
        raise zstandard.ZstdError("no content size, or an implausible one" if size < 0 else
                                  f"content size {size} is implausibly large")
    obj = dctx.decompressobj()
    data = obj.decompress(comp)
    if not obj.eof or obj.unused_data or len(data) != size:
        raise zstandard.ZstdError("not exactly one whole zstd frame")
    return data


def read_records(data: bytes, path: str, magic: bytes, record: struct.Struct, complete: bool,
                 what: str) -> list[tuple]:
    """A binary index: an 8-byte magic, then fixed-size records. A torn last record is what an
    interrupted recording leaves: dropped, but only in an incomplete trace."""
    if data[:8] != magic:
        raise TraceError(f"{path}: corrupted {what} (bad magic)")
    body = data[8:]
    whole = len(body) // record.size * record.size
    if whole != len(body) and complete:
        raise TraceError(f"{path}: truncated {what}")
    return [record.unpack_from(body, off) for off in range(0, whole, record.size)]


def integrity_of(root: str) -> dict:
    """The manifest's "integrity": size and SHA-256 of each file it covers, as on disk."""
    out = {}
    for name in INTEGRITY_FILES:
        with open(os.path.join(root, name), "rb") as f:
            data = f.read()
        out[name] = {"size": len(data), "sha256": file_hash(data)}
    return out


@dataclass
class Frame:
    number: int
    process: int
    offset: int
    compressed: int
    raw: int
    first_event: int
    events: int
    hash: bytes


MAX_QUEUED_FILE_BYTES = 512 << 20


class FileToRead:
    """A mapped file's content that the frame writer's thread reads itself, from a descriptor
    opened when the file was met, and checks against the SHA-256 the file was named by without
    being read (exec_image.FileIdentities: an identity an earlier recording hashed), by the
    check value that recording computed from the content and that SHA-256
    (digests.content_check). So the tracer's thread neither reads nor hashes it. A reader of
    the content (the checkpoint finisher, digesting the file's pages) waits for it: get().
    len() is the size it must have."""

    def __init__(self, fd: int, size: int, sha256: str, check: str, path: str, changed, wrong):
        """fd: owned from now on. changed(fd): whether the file's identity now differs from
        the one it was named by. wrong(): called when the bytes read are not the digest's."""
        self.fd, self.size, self.sha256, self.check, self.path = fd, size, sha256, check, path
        self._changed, self._wrong = changed, wrong
        self._data: bytes | None = None
        self.checked = False        # read, and its bytes are the digest's
        self._error: BaseException | None = None
        self._ready = threading.Event()

    def __len__(self) -> int:
        return self.size

    def read(self) -> bytes:
        """The content, read and checked (the writer's thread, once)."""
        try:
            with open(self.fd, "rb", closefd=False) as f:
                data = f.read()
            if len(data) != self.size or content_check(data, self.sha256) != self.check:
                if self._changed(self.fd):
                    raise TraceError(f"{self.path} changed while it was being recorded (it "
                                     f"is mapped by a recorded process): record again")
                self._wrong()
                raise TraceError(f"{self.path}: its content is not the SHA-256 "
                                 f"{self.sha256[:16]}... the rrverify cache gave for its "
                                 f"identity (file-digests-v3.json in the cache directory, "
                                 f"README); the cache's file digests are now dropped: "
                                 f"record again")
        except BaseException as e:
            self.abandon(e)
            raise
        self._data = data
        self.checked = True
        self._ready.set()
        os.close(self.fd)
        return data

    def unchecked(self) -> None:
        """Never read: the digest it was named by stays a claim (treated as a wrong one)."""
        self._wrong()

    def abandon(self, error: BaseException) -> None:
        """Not to be read (the writer failed before it, or the read did): get() raises error."""
        if not self._ready.is_set():
            self._error = error
            self._ready.set()
            os.close(self.fd)

    def get(self) -> bytes:
        self._ready.wait()
        if self._data is None:
            raise TraceError(f"{self.path} could not be stored: {self._error}")
        return self._data


def file_content(content: "bytes | FileToRead") -> bytes:
    """A mapped file's bytes, waiting for them if the writer's thread is still reading them."""
    return content.get() if isinstance(content, FileToRead) else content


class _MappedFile(typing.NamedTuple):
    """A files.jsonl entry on its way to the frame writer's thread."""
    identity: dict
    data: bytes | FileToRead | None


class TraceWriter:
    """Appends frames as they come, so a recorder killed midway leaves a readable prefix.

    Frames are compressed and written by a background thread kept off the CPU the tracer and
    tracee are pinned to (avoid_cpu): compression then overlaps recording instead of adding to
    every event's cost.

    A failed write (a full disk) is remembered: every later write is refused with the same
    TraceError, so the files keep a whole prefix, and close() says why the trace ends."""

    def __init__(self, path: str, manifest: dict, avoid_cpu: int | None = None):
        self.path = path
        if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
            raise TraceError(f"{path}: already exists; choose another trace directory")
        self._write_error: BaseException | None = None   # OSError, or the writer thread's
        self.manifest = dict(manifest, format=FORMAT_NAME, version=FORMAT_VERSION,
                             uuid=str(uuidlib.uuid4()), complete=False)
        with self.writing():
            os.makedirs(os.path.join(path, "blobs"), exist_ok=True)
            self._write_manifest()
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            self._events_fd = os.open(os.path.join(path, "events.zst"), flags, 0o644)
            self._index_fd = os.open(os.path.join(path, "events.idx"), flags, 0o644)
            self._files_fd = os.open(os.path.join(path, "files.jsonl"), flags, 0o644)
            self._ckpt_fd = os.open(os.path.join(path, "checkpoints.jsonl"), flags, 0o644)
            self._procs_fd = os.open(os.path.join(path, "processes.jsonl"), flags, 0o644)
            write_all(self._index_fd, INDEX_MAGIC)
        self.checkpoints = 0
        # Blobs come from the frame writer's thread (mapped files), the checkpoint finisher's
        # (pages) and the tracer's (the native loop's): a compressor each, as one is not to
        # be shared between threads.
        self._blob_compressors = threading.local()
        self._blob_lock = threading.Lock()     # (for blob_bytes)
        # per process: raw events not yet in a frame, their count; events framed so far
        self._pending: dict[int, tuple[list[bytes], int]] = {}
        self.process_events: list[int] = []
        self.offset = 0
        self.events = 0
        self.frames = 0
        self.raw_bytes = 0
        self.blob_bytes = 0
        self.files = 0
        self.frames_written = self.events_written = 0     # by the writer thread
        self.files_written = 0                            # by the writer thread
        self._queued_file_bytes = 0         # contents add_file queued, not yet written
        self._files_cond = threading.Condition()
        self._frames_out: queue.Queue = queue.Queue(maxsize=16)
        self.writer_cpu_seconds = 0.0      # the frame writer's thread's, once it has ended
        self._writer = threading.Thread(target=self._write_frames, args=(avoid_cpu,),
                                         name="rrverify-frame-writer", daemon=True)
        self._writer.start()

    @property
    def write_failure(self) -> str | None:
        """Why the trace could not be written, or None."""
        return None if self._write_error is None else _cannot_write(self._write_error)

    def _failed(self) -> TraceError:
        return TraceError(f"record: {self.write_failure}")

    @contextlib.contextmanager
    def writing(self):
        """Run a write; an OSError is remembered and becomes the TraceError the user sees."""
        if self._write_error is not None:
            raise self._failed()
        try:
            yield
        except OSError as e:
            self._write_error = self._write_error or e
            raise self._failed() from None

    def _write_manifest(self) -> None:
        _atomic_write(os.path.join(self.path, "manifest.json"),
                      json.dumps(self.manifest, indent=1, sort_keys=True).encode() + b"\n")

    def add_process(self, row: dict) -> int:
        """A new process of the recording: its line in processes.jsonl, and its stream."""
        index = len(self.process_events)
        line = json.dumps(dict(row, index=index), sort_keys=True) + "\n"
        with self.writing():
            write_all(self._procs_fd, line.encode())
        self.process_events.append(0)
        return index

    def add_events(self, process: int, raw: bytes, count: int) -> None:
        chunks, n = self._pending.get(process, ([], 0))
        chunks.append(raw)
        self._pending[process] = (chunks, n + count)

    def cut_frame(self) -> None:
        if self._write_error is not None:
            raise self._failed()
        self._queue_pending()

    def _queue_pending(self) -> None:
        """Each process's pending events become a frame of its stream."""
        for process, (chunks, count) in sorted(self._pending.items()):
            raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self._frames_out.put((raw, process, self.process_events[process], count))
            self.process_events[process] += count
            self.events += count
            self.raw_bytes += len(raw)
            self.frames += 1
        self._pending.clear()

    def _write_frames(self, avoid_cpu: int | None) -> None:
        if avoid_cpu is not None:
            from .tracee import keep_off_cpu     # the recorder's side only
            keep_off_cpu(avoid_cpu)
        compressor = zstandard.ZstdCompressor(level=3, write_checksum=True,
                                              write_content_size=True)
        try:
            self._write_items(compressor)
        finally:
            self.writer_cpu_seconds = time.thread_time()

    def _write_items(self, compressor) -> None:
        failed = False
        while (item := self._frames_out.get()) is not None:
            try:
                if failed:
                    continue       # a frame after a lost one would not be contiguous
                if isinstance(item, _MappedFile):
                    self._write_file(item)
                    continue
                raw, process, first, count = item
                comp = compressor.compress(raw)
                write_all(self._events_fd, comp)
                write_all(self._index_fd, INDEX_RECORD.pack(self.offset, len(comp), len(raw),
                                                             first, count, process,
                                                             frame_hash(comp)))
                self.offset += len(comp)
                self.frames_written += 1
                self.events_written += count
            except BaseException as e:   # a full disk, or anything else: nothing more follows
                failed = True
                with self._files_cond:      # a checkpoint waiting for files fails
                    if self._write_error is None:
                        self._write_error = e
                    self._files_cond.notify_all()
            finally:
                if isinstance(item, _MappedFile):
                    if isinstance(item.data, FileToRead) and not item.data.checked:
                        # never read (a write failed before it): its digest, trusted meanwhile
                        # (patch plans may be filed under it), was never checked either
                        item.data.abandon(self._write_error or TraceError("not written"))
                        item.data.unchecked()
                    with self._files_cond:      # room for the next (add_file)
                        self._queued_file_bytes -= len(item.data or b"")
                        self._files_cond.notify_all()

    def put_blob(self, data: bytes, digest: bytes | None = None) -> bytes:
        """Store data once under its SHA-256 (digest: when the caller just computed it)."""
        return self.put_blobs([data], None if digest is None else [digest])[0]

    def put_blobs(self, datas: list, digests: list[bytes] | None = None) -> list[bytes]:
        """Store each data once under its SHA-256 (digests: when the caller knows them); the
        SHA-256s, which of them the trace lacks, the compression and the writing of those,
        each in one call that lets the GIL go (rrverify/native/blob_files.c): a background
        thread storing a checkpoint's blobs then hands the GIL to and from the tracer's thread
        a few times, not ten times a blob. Two threads may store the same blob at once: each
        writes its own temporary copy, and renames it over the other's."""
        from ._native import ffi, lib
        n = len(datas)
        if not n:
            return []
        if digests is None:
            sizes = ffi.new("uint64_t[]", [len(d) for d in datas])
            out = ffi.new(f"uint8_t[{32 * n}]")
            buffers = [ffi.from_buffer(d) for d in datas]       # alive through the call
            if lib.rrv_sha256_many(ffi.new("uint8_t *[]", buffers), sizes, n, out) < 0:
                raise TraceError("libcrypto could not compute SHA-256")
            concatenated = bytes(ffi.buffer(out, 32 * n))
            digests = [concatenated[32 * i:32 * i + 32] for i in range(n)]
        first_of: dict[str, int] = {}            # each distinct blob once
        for i, d in enumerate(digests):
            first_of.setdefault(blob_path(self.path, d), i)
        paths = list(first_of)
        present = ffi.new(f"uint8_t[{len(paths)}]")
        with self.writing():
            c_paths = [ffi.new("char[]", os.fsencode(p)) for p in paths]
            lib.rrv_files_exist(ffi.new("char *[]", c_paths), len(paths), present)
            missing = [k for k in range(len(paths)) if not present[k]]
            if missing:
                which = list(first_of.values())
                segments = self._compress_many([datas[which[k]] for k in missing])
                _write_files([paths[k] for k in missing], segments)
                with self._blob_lock:
                    self.blob_bytes += sum(len(seg) for seg in segments)
        return digests

    def _compress_many(self, datas: list) -> list:
        """Each data compressed as a blob, in one call where python-zstandard can (its
        multi_compress_to_buffer is only in C builds with zstd's thread pool)."""
        compressor = self._blob_compressor()
        if len(datas) > 1:
            try:
                compressed = compressor.multi_compress_to_buffer(datas)
                return [compressed[j] for j in range(len(datas))]
            except (AttributeError, NotImplementedError):
                pass
        return [compressor.compress(d) for d in datas]

    def _blob_compressor(self) -> zstandard.ZstdCompressor:
        compressor = getattr(self._blob_compressors, "compressor", None)
        if compressor is None:
            # Level 1 for blobs (mapped files, pages): recording-time cost matters more here
            # than the last few percent of size.
            compressor = self._blob_compressors.compressor = zstandard.ZstdCompressor(
                level=1, write_checksum=True, write_content_size=True)
        return compressor

    def add_file(self, identity: dict, data: bytes | FileToRead | None) -> int:
        """files.jsonl entry number `index`, and its content (data, None if stored before) as
        the blob identity["blob"]. Both are written by the frame writer's thread, in order
        with the frames: the tracer does not wait for the compression (a build maps 25 MB of
        compiler and libraries), nor, for a FileToRead, for the reading and hashing; and no
        frame on disk names a file whose entry and blob are not. A checkpoint waits for them
        (wait_for_files). At most MAX_QUEUED_FILE_BYTES of contents wait (a program mapping a
        large file in 1 GiB windows): past that, this waits for room."""
        size = len(data or b"")
        with self._files_cond:
            while (self._write_error is None and self._queued_file_bytes and
                   self._queued_file_bytes + size > MAX_QUEUED_FILE_BYTES):
                self._files_cond.wait(1.0)
            if self._write_error is not None:
                raise self._failed()
            self._queued_file_bytes += size
        index = self.files
        self.files += 1
        self._frames_out.put(_MappedFile(dict(identity, index=index), data))
        return index

    def _write_file(self, item: "_MappedFile") -> None:
        data = item.data.read() if isinstance(item.data, FileToRead) else item.data
        if data is not None:
            self._store_file(data, item.identity["blob"])
        with self.writing():
            write_all(self._files_fd, (json.dumps(item.identity, sort_keys=True) + "\n").encode())
        with self._files_cond:
            self.files_written += 1
            self._files_cond.notify_all()

    def _store_file(self, data: bytes, digest: str) -> None:
        """A mapped file's blob: copied from the analysis cache's stored files when an earlier
        recording compressed the same content, else compressed, and then kept there."""
        path = blob_path(self.path, bytes.fromhex(digest))
        if os.path.exists(path):
            return
        kept = STORED_FILES.blob(digest, len(data))
        if kept is not None:
            with self.writing():
                _write_files([path], [kept])
            with self._blob_lock:
                self.blob_bytes += len(kept)
            return
        self.put_blob(data, bytes.fromhex(digest))
        STORED_FILES.add_blob(digest, path)

    def wait_for_files(self, count: int) -> None:
        """Wait until the first `count` files.jsonl entries and their blobs are written: a
        checkpoint, or a page the page store records as a file's, may name them."""
        with self._files_cond:
            while (self.files_written < count and self._write_error is None and
                   self._writer.is_alive()):
                self._files_cond.wait(1.0)
        if self.files_written < count:
            raise self._failed()

    def add_checkpoint(self, ckpt: dict) -> int:
        """Write checkpoint number len(checkpoints) and index it (the index line last, so a
        reader never finds an index entry without its checkpoint)."""
        n = self.checkpoints
        data = json.dumps(dict(ckpt, id=n), sort_keys=True).encode() + b"\n"
        line = json.dumps({"id": n, "process": ckpt["process"], "event": ckpt["event"],
                           "sha256": file_hash(data)}) + "\n"
        with self.writing():
            _write_files([checkpoint_path(self.path, n)], [data])
            write_all(self._ckpt_fd, line.encode())
        self.checkpoints += 1
        return n

    def close(self, *, complete: bool, end: dict, stats: dict) -> None:
        """Flush every frame that can be, and write the final manifest: the end, the stats and
        the integrity of the files it covers. After a failed write, end.reason says so."""
        try:
            self._queue_pending()    # whole events, even after a failed write elsewhere
        finally:
            self._frames_out.put(None)
            self._writer.join()
        for fd in (self._events_fd, self._index_fd, self._files_fd, self._ckpt_fd,
                   self._procs_fd):
            try:
                os.fsync(fd)
            except OSError as e:
                self._write_error = self._write_error or e
            os.close(fd)
        if self._write_error is not None:
            complete = False
            end = dict(end, reason=self.write_failure)
        if "cpu_seconds" in stats:
            stats = dict(stats, cpu_seconds=dict(
                stats["cpu_seconds"], frame_writer=round(self.writer_cpu_seconds, 6)))
        self.manifest.update(complete=complete, end=end, integrity=integrity_of(self.path),
                             stats=dict(stats, events=self.events_written,
                                        frames=self.frames_written,
                                        event_bytes_raw=self.raw_bytes,
                                        event_bytes_compressed=self.offset,
                                        blob_bytes=self.blob_bytes,
                                        mapped_files=self.files_written,
                                        checkpoints=self.checkpoints,
                                        processes=len(self.process_events)))
        self._write_final_manifest()
        if self._write_error is not None:
            raise self._failed()

    def _write_final_manifest(self) -> None:
        """On a full disk, retry smaller, and as a last resort overwrite the first manifest in
        place (its blocks are already allocated): the trace must say how it ended."""
        path = os.path.join(self.path, "manifest.json")
        compact = json.dumps(self.manifest, sort_keys=True, separators=(",", ":")).encode()
        try:
            try:
                self._write_manifest()
            except OSError:
                _atomic_write(path, compact + b"\n")
        except OSError as e:
            first = e
            try:
                old = os.path.getsize(path)
                if len(compact) >= old:
                    raise OSError(errno.ENOSPC, "the final manifest is larger than the first")
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.pwrite(fd, compact + b" " * (old - len(compact) - 1) + b"\n", 0)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError:
                why = self.write_failure or _cannot_write(first)
                raise TraceError(f"record: {why}; the manifest could not be updated either: "
                                 f"it says the recording never ended") from None


def _cannot_write(e: BaseException) -> str:
    if isinstance(e, TraceError):       # says itself what is wrong (a file the writer checked)
        return str(e)
    if not isinstance(e, OSError):      # the writer's thread failed otherwise (out of memory)
        return f"cannot write the trace: {type(e).__name__}: {e}"
    what = os.strerror(e.errno) if e.errno else str(e)
    return "cannot write the trace: " + what[:1].lower() + what[1:]


class Trace:
    """A trace opened for reading. Construction validates the manifest and the frame index."""

    def __init__(self, path: str):
        self.path = path
        if not os.path.isdir(path):
            raise TraceError(f"{path}: no such trace directory")
        mpath = os.path.join(path, "manifest.json")
        m = load_json(read_trace_file(path, "manifest.json", MAX_MANIFEST,
                                      f"{path}: not an rrverify trace (no manifest.json)"),
                      f"{mpath}: corrupted manifest")
        if not isinstance(m, dict) or m.get("format") != FORMAT_NAME:
            raise TraceError(f"{path}: not an rrverify trace (manifest format is "
                             f"{m.get('format') if isinstance(m, dict) else m!r:.40})")
        version = m.get("version")
        if not is_int(version) or version < 1:
            raise TraceError(f"{mpath}: corrupted manifest (format version {version!r:.40})")
        if version > FORMAT_VERSION:
            raise TraceError(f"{path}: trace format version {version} is newer than this rrverify "
                             f"reads (version {FORMAT_VERSION}); upgrade rrverify")
        if version < FORMAT_VERSION:
            raise TraceError(f"{path}: trace format version {version} is older than this rrverify "
                             f"reads (version {FORMAT_VERSION}); re-record it")
        _check_manifest(m, mpath)
        self.manifest = m
        self.complete = m["complete"]
        self.integrity = m.get("integrity") or {}
        self.frames = self._read_index()
        self.event_count = sum(f.events for f in self.frames)
        self._processes = None
        self._streams: dict[int, "Stream"] = {}
        stats = m.get("stats") or {}
        if self.complete and (stats.get("events") != self.event_count
                              or stats.get("frames") != len(self.frames)):
            raise TraceError(f"{path}: truncated trace: the manifest records {stats.get('events')} "
                             f"events in {stats.get('frames')} frames, the index holds "
                             f"{self.event_count} in {len(self.frames)}")
        self._dctx = zstandard.ZstdDecompressor()
        self._files = None
        self._checkpoints = None

    def read_file(self, name: str, cap: int, what: str, missing: str | None = None) -> bytes:
        """One of the files the manifest's integrity covers (or a checkpoint file), whole,
        checked against its recorded size and hash when the manifest has them."""
        data = read_trace_file(self.path, name, cap, missing)
        want = self.integrity.get(name)
        if want is not None:
            p = os.path.join(self.path, name)
            if len(data) < want["size"]:
                raise TraceError(f"{p}: truncated {what} ({len(data)} bytes, the manifest "
                                 f"records {want['size']})")
            if len(data) != want["size"] or file_hash(data) != want["sha256"]:
                raise TraceError(f"{p}: corrupted {what} (it does not match the manifest's "
                                 f"integrity record)")
        return data

    def _read_index(self) -> list[Frame]:
        ipath = os.path.join(self.path, "events.idx")
        epath = os.path.join(self.path, "events.zst")
        missing = f"{self.path}: truncated trace (events.idx or events.zst missing)"
        data = self.read_file("events.idx", MAX_INDEX, "frame index", missing)
        records = read_records(data, ipath, INDEX_MAGIC, INDEX_RECORD, self.complete,
                               "frame index")
        fd = open_trace_file(self.path, "events.zst", missing)
        try:
            esize = os.fstat(fd).st_size
        finally:
            os.close(fd)
        frames, expect_offset = [], 0
        expect_event: dict[int, int] = {}     # per process: its next event
        for n, (o, c, r, first, count, process, h) in enumerate(records):
            # Streams interleave in any order (a process's first frame may follow a younger
            # one's); that every frame's process exists is checked against processes.jsonl.
            if (o != expect_offset or first != expect_event.get(process, 0) or
                    r > MAX_FRAME_RAW or count == 0 or not 0 < c <= frame_bound(r)):
                raise TraceError(f"{ipath}: corrupted frame index at frame {n}")
            if o + c > esize:
                if self.complete:
                    raise TraceError(f"{epath}: truncated (frame {n} ends past the file's end)")
                break  # an interrupted recording: its last frame never reached the disk
            frames.append(Frame(n, process, o, c, r, first, count, h))
            expect_offset, expect_event[process] = o + c, first + count
        return frames

    def read_frame_bytes(self, frame: Frame, fd: int | None = None) -> bytes:
        """A frame's compressed bytes, exactly as indexed (not yet checked)."""
        own = fd is None
        if own:
            fd = open_trace_file(self.path, "events.zst",
                                 f"{self.path}: truncated trace (events.zst missing)")
        try:
            return pread_exact(fd, frame.offset, frame.compressed)
        finally:
            if own:
                os.close(fd)

    def read_frame(self, frame: Frame) -> bytes:
        return self.decode_frame(frame, self.read_frame_bytes(frame))

    def decode_frame(self, frame: Frame, comp: bytes) -> bytes:
        """A frame's events from its compressed bytes, checked against the index."""
        if len(comp) != frame.compressed:
            raise TraceError(f"{self.path}/events.zst: truncated in frame {frame.number}")
        if frame_hash(comp) != frame.hash:
            raise TraceError(f"{self.path}/events.zst: events frame {frame.number} is corrupted "
                             f"(hash mismatch)")
        try:
            raw = self._dctx.decompress(comp, max_output_size=frame.raw)
        except zstandard.ZstdError as e:
            raise TraceError(f"{self.path}/events.zst: events frame {frame.number} is corrupted ({e})") from None
        if len(raw) != frame.raw:
            raise TraceError(f"{self.path}/events.zst: events frame {frame.number} has the wrong size")
        return raw

    def iter_frames(self):
        for frame in self.frames:
            yield frame, self.read_frame(frame)

    def events(self):
        """Every event, stream by stream (each event's .process says whose)."""
        for p in range(len(self.processes)):
            yield from self.stream(p).events()

    @property
    def processes(self) -> list[dict]:
        """processes.jsonl: [{"index", "pid", "parent", "parent_event", ...}], parents first."""
        if self._processes is None:
            rows = self._jsonl("processes.jsonl", "index", {"pid": is_int})
            for row in rows:
                parent = row.get("parent")
                if (parent is None) != (row["index"] == 0) or parent is not None and not (
                        is_int(parent) and 0 <= parent < row["index"]
                        and is_u64(row.get("parent_event"))):
                    raise TraceError(f"{self.path}/processes.jsonl: corrupted at line "
                                     f"{row['index'] + 1} (its parent)")
            if any(f.process >= len(rows) for f in self.frames):
                raise TraceError(f"{self.path}/events.idx: a frame belongs to a process that "
                                 f"processes.jsonl does not list")
            self._processes = rows
        return self._processes

    def unreplayable(self) -> list[dict]:
        """The processes with events that no checkpoint lets replay check: none in a complete
        trace from rrverify's recorder, except a child killed before it ever ran (its stream
        is its exit alone). An interrupted recording may leave a child's events without its
        birth checkpoint."""
        from .events import EXIT
        with_checkpoint = {c["process"] for c in self.segments}
        out = []
        for p in self.processes:
            s = self.stream(p["index"])
            if p["index"] in with_checkpoint or s.event_count == 0:
                continue
            if s.event_count == 1 and next(s.events()).kind == EXIT:
                continue
            out.append(p)
        return out

    def stream(self, process: int) -> "Stream":
        """One process's events: its frames, in order."""
        if not 0 <= process < len(self.processes):
            raise TraceError(f"{self.path}: no process {process} (the trace has "
                             f"{len(self.processes)})")
        if process not in self._streams:
            self._streams[process] = Stream(self, process)
        return self._streams[process]

    def blob_file(self, digest: bytes) -> bytes:
        """A blob's file as stored (compressed, not checked)."""
        return read_trace_file(self.path, blob_name(digest), MAX_BLOB_FILE,
                               f"{self.path}: blob {digest.hex()} is missing")

    def blob(self, digest: bytes, verify: bool = True) -> bytes:
        """A blob's content, checked against its name unless the caller checks every piece
        it uses itself (verify=False: the page store verifies each page's own digest)."""
        comp = self.blob_file(digest)
        try:
            data = decompress_blob(self._dctx, comp, MAX_BLOB)
        except zstandard.ZstdError as e:
            raise TraceError(f"{self.path}: blob {digest.hex()} is corrupted ({e})") from None
        if verify and blob_digest(data) != digest:
            raise TraceError(f"{self.path}: blob {digest.hex()} is corrupted (hash mismatch)")
        return data

    def _jsonl(self, name: str, key: str, required: dict) -> list[dict]:
        """An append-only JSON-lines table whose n-th line has key == n. A torn last line is
        what an interrupted recording leaves: tolerated only in an incomplete trace."""
        p = os.path.join(self.path, name)
        lines = self.read_file(name, MAX_MANIFEST, "table",
                               f"{self.path}: {name} is missing").split(b"\n")
        rows = []
        for n, line in enumerate(lines):
            if not line:
                continue
            try:
                row = load_json(line, p)
            except TraceError:
                if n == len(lines) - 1 and not self.complete:
                    break
                raise TraceError(f"{p}: corrupted at line {n + 1}") from None
            if not isinstance(row, dict) or row.get(key) != len(rows) or not is_int(row[key]) \
                    or any(not check(row.get(k)) for k, check in required.items()):
                raise TraceError(f"{p}: corrupted at line {n + 1}")
            rows.append(row)
        return rows

    @property
    def files(self) -> list[dict]:
        if self._files is None:
            self._files = self._jsonl("files.jsonl", "index",
                                      {"path": lambda v: isinstance(v, str), "size": is_u64,
                                       "blob": is_hex_digest})
        return self._files

    @property
    def checkpoints(self) -> list[dict]:
        """The checkpoint index: [{"id", "process", "event", "sha256"}]; each process's
        events strictly increasing (its first checkpoint may be at event 0: a child's birth)."""
        if self._checkpoints is None:
            nprocs = len(self.processes)
            rows = self._jsonl("checkpoints.jsonl", "id",
                               {"event": is_u64, "sha256": is_hex_digest,
                                "process": lambda v: is_int(v) and 0 <= v < nprocs})
            last: dict[int, int] = {}
            for row in rows:
                p = row["process"]
                if row["event"] <= last.get(p, -1) or (
                        self.complete and row["event"] > self.stream(p).event_count):
                    raise TraceError(f"{self.path}: checkpoints.jsonl: checkpoint {row['id']} "
                                     f"is at event {row['event']} of process {p}, out of "
                                     f"order or past the end")
                last[p] = row["event"]
            self._checkpoints = rows
        return self._checkpoints

    @property
    def segments(self) -> list[dict]:
        """The checkpoints a segment starts from (its id is the segment's number): all of
        them, but in an interrupted recording only those whose event reached the disk (replay
        could not go on from the others)."""
        return [r for r in self.checkpoints
                if self.complete or r["event"] < self.stream(r["process"]).event_count]

    def checkpoint(self, n: int) -> dict:
        from .checkpoints.model import load_checkpoint
        return load_checkpoint(self, n)


class Stream:
    """The events of one process of a trace: its frames, numbered from its event 0."""

    def __init__(self, trace: Trace, process: int):
        self.trace = trace
        self.path = trace.path
        self.process = process
        self.frames = [f for f in trace.frames if f.process == process]
        self.event_count = sum(f.events for f in self.frames)
        self.row = trace.processes[process]

    def read_frame(self, frame: Frame) -> bytes:
        return self.trace.read_frame(frame)

    def events(self):
        from .events import iter_events
        for frame in self.frames:
            for ev in iter_events(self.read_frame(frame), frame.first_event):
                ev.process = self.process
                yield ev

    @property
    def checkpoints(self) -> list[dict]:
        """This process's chain: the checkpoints it can be replayed from or compared with."""
        return [c for c in self.trace.segments if c["process"] == self.process]


def _check_manifest(m: dict, mpath: str) -> None:
    """The fields readers use have the types they use them as (version already checked)."""
    def bad(key: str):
        raise TraceError(f"{mpath}: corrupted manifest (field {key!r} missing or invalid)")
    for key, typ in (("command", list), ("exe", str), ("env", list), ("cwd", str),
                     ("complete", bool), ("host", dict)):
        if not isinstance(m.get(key), typ):
            bad(key)
    if not all(isinstance(a, str) for a in m["command"]):
        bad("command")
    if not is_rlimits(m.get("rlimits", [])):
        bad("rlimits")
    host = m["host"]
    cpuid = host.get("cpuid", {})
    if not isinstance(cpuid, dict) or not all(
            isinstance(v, list) and len(v) == 4 and all(is_int(r) and 0 <= r < 2**32 for r in v)
            for v in cpuid.values()):
        bad("host.cpuid")
    for key in ("cpu", "xsave"):
        if not isinstance(host.get(key, {}), dict):
            bad(f"host.{key}")
    for key in ("end", "stats", "integrity"):
        if not isinstance(m.get(key, {}), dict):
            bad(key)
    if "end" in m and "integrity" not in m:
        raise TraceError(f"{mpath}: corrupted manifest (the recording ended but the manifest "
                         f"has no integrity record)")
    if "integrity" in m:
        for name in INTEGRITY_FILES:
            rec = m["integrity"].get(name)
            if not isinstance(rec, dict) or not is_u64(rec.get("size")) or \
                    not is_hex_digest(rec.get("sha256")):
                bad(f"integrity.{name}")
