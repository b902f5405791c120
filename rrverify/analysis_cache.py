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
import tempfile
import threading
import time

MAX_FILE = 4 << 20          # a cache file larger than this is not read
LOCK_SECONDS = 2.0          # the longest KnownFiles.save waits for another recorder's merge
_DIGEST = re.compile(r"[0-9a-f]{64}")
_KNOWN = re.compile(r"[0-9a-f]{64}/[0-9a-f]{16}")    # KnownFiles: SHA-256/check


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
    """SHA-256s of files by identity, "dev:inode:size:mtime_ns:ctime_ns" -> "SHA-256/CHECK"
    (hex), in one file, DIR/file-digests-v3.json, loaded at the first lookup and merged back
    by save() (the newest MAX_ENTRIES kept). CHECK is digests.content_check of the content:
    a recording that names a file by the SHA-256 checks the bytes it reads with it, a tenth
    of the cost of hashing them again. Only identities whose times would show any later
    change are added (exec_image.RACY_NS): the caller's rule."""

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
        return None if root is None else os.path.join(root, "file-digests-v3.json")

    @staticmethod
    def _valid(entries) -> dict:
        if not isinstance(entries, dict):
            return {}
        return {k: v for k, v in entries.items()
                if isinstance(k, str) and isinstance(v, str) and _KNOWN.fullmatch(v)}

    def get(self, identity: str) -> tuple[str, str] | None:
        """(SHA-256, check) of the file of that identity, if known."""
        with self._lock:
            if self._entries is None:
                path = self._path()
                self._entries = self._valid(_read_json(path)) if path else {}
            entry = self._entries.get(identity)
        return None if entry is None else tuple(entry.split("/"))

    def add(self, identity: str, digest: str, check: str) -> None:
        entry = f"{digest}/{check}"
        if not _KNOWN.fullmatch(entry):
            return
        self.get(identity)
        with self._lock:
            self._entries[identity] = self._added[identity] = entry

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
    """DIR/stored-files-v2/<sha256>.zst, a mapped file's blob exactly as a trace stores it (a
    zstd frame that names the file's size), and <sha256>.pages, the 16-byte names of its pages
    in order. Each is sealed: a magic and the SHA-256 of what follows, checked before use, so a
    file damaged on disk (a crash mid-write, bit rot) is never used, and is replaced. Both are
    copied, never linked, to and from traces: editing a trace cannot change them. Beyond the
    seal they are trusted as the user's own, like the rest of the cache, and checked where it is
    cheap (a blob's frame must name the file's size; a page list must hold one name per page,
    be right at its first, middle and last page, and name no page zero that is not:
    checkpoints/pages.py). At most MAX_BYTES are kept: an addition past that removes the least
    recently used."""

    MAX_BYTES = 1 << 30
    MAGIC = b"RRVSTOR2"
    SEAL = len(MAGIC) + 32

    @staticmethod
    def _path(digest: str, suffix: str) -> str | None:
        root = cache_dir()
        if root is None or not _DIGEST.fullmatch(digest):
            return None
        return os.path.join(root, "stored-files-v2", digest + suffix)

    def _read(self, path: str, limit: int) -> bytes | None:
        """What the sealed file at path holds (at most `limit` bytes), or None."""
        import hashlib
        try:
            with open(path, "rb") as f:
                raw = f.read(self.SEAL + limit + 1)
                if len(raw) <= self.SEAL + limit:
                    os.utime(f.fileno())                    # used: kept longest
        except OSError:
            return None
        payload = raw[self.SEAL:]
        if (len(payload) > limit or raw[:len(self.MAGIC)] != self.MAGIC or
                hashlib.sha256(payload).digest() != raw[len(self.MAGIC):self.SEAL]):
            return None
        return payload

    def _write(self, path: str, payload: bytes) -> None:
        import hashlib
        _write_bytes(path, self.MAGIC + hashlib.sha256(payload).digest() + payload, durable=True)
        self._evict(os.path.dirname(path))

    def blob(self, digest: str, size: int) -> bytes | None:
        """The kept blob of content `digest` (`size` bytes), or None (none kept, or none that
        names that size): the caller compresses the content."""
        import zstandard
        path = self._path(digest, ".zst")
        blob = None if path is None else self._read(path, size + (size >> 4) + (1 << 16))
        try:
            if blob is None or zstandard.get_frame_parameters(blob).content_size != size:
                return None
        except zstandard.ZstdError:
            return None
        return blob

    def add_blob(self, digest: str, src: str) -> None:
        """Keep the blob a trace just stored at src (in place of a damaged one). Best effort."""
        dest = self._path(digest, ".zst")
        if dest is not None:
            try:
                with open(src, "rb") as f:
                    self._write(dest, f.read())
            except OSError:
                pass

    def page_names(self, digest: str, pages: int, name_of) -> bytes | None:
        """The names of the `pages` pages of content `digest`, if kept and right at the pages
        name_of(page numbers) names again: the first, the middle one and the last."""
        path = self._path(digest, ".pages")
        names = None if path is None else self._read(path, 16 * pages)
        if names is None or len(names) != 16 * pages:
            return None
        sample = sorted({0, pages // 2, pages - 1})
        if [names[16 * i:16 * i + 16] for i in sample] != name_of(sample):
            return None
        return names

    def add_page_names(self, digest: str, names: bytes) -> None:
        """Keep the names computed for a file the cache had none for (or a damaged list)."""
        path = self._path(digest, ".pages")
        if path is not None:
            self._write(path, names)

    def _evict(self, directory: str) -> None:
        entries = []
        try:
            for e in os.scandir(directory):
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue            # gone meanwhile (another recorder's)
                entries.append((st.st_mtime_ns, st.st_size, e.path))
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


def _write_bytes(path: str, data: bytes, *, durable: bool = False) -> None:
    """Write path whole, atomically (a temporary file renamed, on disk first if `durable`); on
    failure, nothing."""
    tmp = None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


STORED_FILES = StoredFiles()
