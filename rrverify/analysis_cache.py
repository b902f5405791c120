"""Analyses of file contents kept across recordings, by content: the syscall sites of a library
(recorder/patch_plan.py) and the functions of a kernel's vDSO (exec_image.vdso_patches). Both
are pure functions of the bytes, and computing them takes capstone and pyelftools, whose
imports alone cost 80 ms, more than a short recording's own work; a recording of programs
met before imports neither.

One JSON file per content, DIR/KIND-vVERSION/<sha256>.json, an object of entries, written
whole and atomically (a temporary file renamed) when save() is called, at the end of a
recording. Nothing in the trace depends on it: an entry is what computing it again would
give. So a file that cannot be read, is not JSON of the right shape, or holds an entry its
`valid` refuses is ignored, the analysis made again and the file rewritten; and a directory
that cannot be written leaves recording as it was, without the cache. The directory is
$RRVERIFY_CACHE_DIR, else $XDG_CACHE_HOME/rrverify, else ~/.cache/rrverify. Its files are
trusted as the user's own (the same user's recordings write them): a cached syscall site is
still checked against the process's memory before it is patched (recorder/patch.py).

StoredFiles keeps what a trace stores of a mapped file, by the file's SHA-256: its blob, as
compressed for a trace, and the names of its pages (checkpoints/pages.py). A recording of
programs met before then copies the one and reads the other instead of compressing and hashing
a compiler's 30 MB again; both are facts of the content, so nothing about them is a claim.

One more cache is kept by identity, not content: KnownFiles, the SHA-256 of a file by its
(device, inode, size, mtime, ctime), so that a recording need not read and hash on the
tracer's thread a program file an earlier recording met (exec_image.FileIdentities). An entry
there is a claim, not a fact: the trace writer reads the file anyway, to store it, and checks
its bytes against the claimed digest (trace.FileToRead); a wrong one fails that recording
with one line, and the file keeps only the digests that recording computed itself."""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
import threading
import time

MAX_FILE = 4 << 20          # a cache file larger than this is not read
LOCK_SECONDS = 2.0          # the longest KnownFiles.save waits for another recorder's merge
_DIGEST = re.compile(r"[0-9a-f]{64}")


def cache_dir() -> str | None:
    """None: no home to keep it in."""
    explicit = os.environ.get("RRVERIFY_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    return os.path.join(base, "rrverify")


_ALL: list["ContentCache"] = []


def save_all() -> None:
    """Save every cache. Never raises: a cache is no reason for a recording to fail, nor to
    hide why it failed."""
    for cache in _ALL:
        try:
            cache.save()
        except Exception:
            pass


class ContentCache:
    def __init__(self, kind: str, version, valid):
        """valid(key, value): whether an entry read from a file has the right shape."""
        self.kind, self.version, self.valid = kind, version, valid
        _ALL.append(self)
        self._entries: dict[str, dict] = {}     # digest -> entries, as loaded and added
        self._dirty: set[str] = set()
        self._closed = False        # discard_unsaved: nothing more is kept
        self._lock = threading.Lock()

    def _path(self, digest: str) -> str | None:
        root = cache_dir()
        if root is None:
            return None
        return os.path.join(root, f"{self.kind}-v{self.version}", f"{digest}.json")

    def entries(self, digest: str) -> dict:
        """The entries known for this content (loaded from its file once)."""
        with self._lock:
            known = self._entries.get(digest)
            if known is None:
                known = self._entries[digest] = self._load(digest)
            return known

    def _load(self, digest: str) -> dict:
        path = self._path(digest)
        if path is None or not _DIGEST.fullmatch(digest):
            return {}
        data = _read_json(path)
        try:
            if not isinstance(data, dict) or not all(
                    isinstance(k, str) and self.valid(k, v) for k, v in data.items()):
                return {}
        except Exception:       # a shape `valid` did not foresee
            return {}
        return data

    def discard_unsaved(self) -> None:
        """Forget every entry added since the last save(), and keep none added from now on."""
        with self._lock:
            for digest in self._dirty:
                self._entries.pop(digest, None)     # loaded again from its file if asked
            self._dirty = set()
            self._closed = True

    def add(self, digest: str, key: str, value) -> None:
        if not _DIGEST.fullmatch(digest):
            return
        entries = self.entries(digest)
        with self._lock:
            if self._closed:
                return
            entries[key] = value
            self._dirty.add(digest)

    def save(self) -> None:
        """Write the files of the contents that gained entries (merged with what another
        recording may have written meanwhile). Best effort: a failure leaves no cache."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            entries = {d: dict(self._entries[d]) for d in dirty}
            self._closed = False        # (closed for one recording: the next may add again)
        for digest, mine in entries.items():
            path = self._path(digest)
            if path is None:
                return
            _write_json(path, dict(self._load(digest), **mine))


def _read_json(path: str):
    """The JSON value in path, or None: missing, too large, unreadable or not JSON."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE + 1)
        return None if len(raw) > MAX_FILE else json.loads(raw)
    except Exception:
        return None


def _write_json(path: str, value) -> None:
    _write_bytes(path, json.dumps(value, separators=(",", ":")).encode())


class KnownFiles:
    """SHA-256s of files by identity, "dev:inode:size:mtime_ns:ctime_ns" -> hex digest, in one
    file, DIR/file-digests-v1.json, loaded at the first lookup and merged back by save()
    (the newest MAX_ENTRIES kept). Only identities whose times would show any later change
    are added (exec_image.RACY_NS): the caller's rule."""

    MAX_ENTRIES = 20000

    def __init__(self):
        _ALL.append(self)
        self._entries: dict[str, str] | None = None
        self._added: dict[str, str] = {}
        self._cleared = False
        self._lock = threading.Lock()

    @staticmethod
    def _path() -> str | None:
        root = cache_dir()
        return None if root is None else os.path.join(root, "file-digests-v1.json")

    @staticmethod
    def _valid(entries) -> dict:
        if not isinstance(entries, dict):
            return {}
        return {k: v for k, v in entries.items()
                if isinstance(k, str) and isinstance(v, str) and _DIGEST.fullmatch(v)}

    def get(self, identity: str) -> str | None:
        with self._lock:
            if self._entries is None:
                path = self._path()
                self._entries = self._valid(_read_json(path)) if path else {}
            return self._entries.get(identity)

    def add(self, identity: str, digest: str) -> None:
        if not _DIGEST.fullmatch(digest):
            return
        self.get(identity)
        with self._lock:
            self._entries[identity] = self._added[identity] = digest

    def clear(self) -> None:
        """An entry was found wrong: whatever made it so may have made others, so none is
        used from now on, and save() leaves in the file only what this recorder hashed.
        Nothing else this recording learned is kept either: an analysis may have been filed
        under a digest an entry claimed for a file of other content."""
        with self._lock:
            self._entries, self._cleared = dict(self._added), True
        for cache in _ALL:
            if isinstance(cache, ContentCache):
                cache.discard_unsaved()

    def save(self) -> None:
        with self._lock:
            added, self._added = self._added, {}
            cleared, self._cleared = self._cleared, False
        path = self._path()
        if path is None or not (added or cleared):
            return
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            lock = os.open(path + ".lock", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            return
        try:
            # Another recorder's merge waits for ours; one that holds the lock too long (stopped
            # meanwhile) makes this one give up: the cache is best effort.
            deadline = time.monotonic() + LOCK_SECONDS
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        return
                    time.sleep(0.01)
            merged = {} if cleared else self._valid(_read_json(path))
            for identity, digest in added.items():
                merged.pop(identity, None)          # re-added: the newest, kept longest
                merged[identity] = digest
            _write_json(path, dict(list(merged.items())[-self.MAX_ENTRIES:]))
        finally:
            os.close(lock)


KNOWN_FILES = KnownFiles()


class StoredFiles:
    """DIR/stored-files-v1/<sha256>.zst, a mapped file's blob exactly as a trace stores it (a
    zstd frame that names the file's size), and <sha256>.pages, the 16-byte names of its pages
    in order. Both are copied, never linked, to and from traces: editing a trace cannot change
    them. Trusted as the user's own like the rest of the cache, and checked where it is cheap (a
    blob's frame must name the file's size, a page list must hold one name per page): a wrong one
    makes a trace whose verification fails ("blob ... is corrupted", "page ... is not"), never
    one that verifies wrongly. At most MAX_BYTES are kept: an addition past that removes the
    least recently used."""

    MAX_BYTES = 1 << 30
    FRAME_HEADER = 18           # zstd's longest frame header

    @staticmethod
    def _path(digest: str, suffix: str) -> str | None:
        root = cache_dir()
        if root is None or not _DIGEST.fullmatch(digest):
            return None
        return os.path.join(root, "stored-files-v1", digest + suffix)

    def copy_blob(self, digest: str, size: int, dest: str) -> int | None:
        """Copy the blob of content `digest` (`size` bytes) to dest, atomically; its bytes, or
        None if there is none (or none that names that size): the caller compresses."""
        import zstandard
        src = self._path(digest, ".zst")
        if src is None:
            return None
        try:
            with open(src, "rb") as f:
                header = f.read(self.FRAME_HEADER)
                if zstandard.get_frame_parameters(header).content_size != size:
                    return None
                os.utime(f.fileno())                        # used: kept longest
                f.seek(0)
                return _copy_atomically(f, dest)
        except (OSError, zstandard.ZstdError):
            return None

    def add_blob(self, digest: str, src: str) -> None:
        """Keep a copy of the blob a trace just stored at src (in place of a damaged one).
        Best effort."""
        dest = self._path(digest, ".zst")
        if dest is None:
            return
        try:
            with open(src, "rb") as f:
                _copy_atomically(f, dest)
        except OSError:
            return
        self._evict(os.path.dirname(dest))

    def page_names(self, digest: str, pages: int, name_of) -> bytes | None:
        """The names of the `pages` pages of content `digest`, if kept and right at the pages
        name_of(page numbers) names again: the first, the middle one and the last."""
        path = self._path(digest, ".pages")
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                names = f.read(16 * pages + 1)
        except OSError:
            return None
        if len(names) != 16 * pages:
            return None
        sample = sorted({0, pages // 2, pages - 1})
        if [names[16 * i:16 * i + 16] for i in sample] != name_of(sample):
            return None
        return names

    def add_page_names(self, digest: str, names: bytes) -> None:
        """Keep the names computed for a file the cache had none for (or a damaged list)."""
        path = self._path(digest, ".pages")
        if path is not None:
            _write_bytes(path, names)

    def _evict(self, directory: str) -> None:
        try:
            entries = [(st.st_mtime_ns, st.st_size, e.path) for e in os.scandir(directory)
                       for st in (e.stat(follow_symlinks=False),)]
        except OSError:
            return
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.MAX_BYTES:
                break
            try:
                os.unlink(path)
                total -= size
            except OSError:
                pass


def _copy_atomically(src, dest: str) -> int:
    """Copy the open file src to dest through a temporary file of this thread's, renamed over
    dest; the bytes copied. OSError on failure (the temporary file removed)."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = f"{dest}.tmp.{threading.get_native_id()}"
    try:
        with open(tmp, "wb") as out:
            shutil.copyfileobj(src, out)
            size = out.tell()
        os.replace(tmp, dest)
        return size
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _write_bytes(path: str, data: bytes) -> None:
    """Write path whole, atomically (a temporary file renamed); on failure, nothing."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


STORED_FILES = StoredFiles()
