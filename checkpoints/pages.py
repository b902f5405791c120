"""The trace's page store: every distinct memory page a checkpoint holds, stored once.

A page is named by the first 16 bytes of the SHA-256 of its 4096 bytes. pages.idx maps each
name to where the bytes are: in a chunk (a blob of up to CHUNK_PAGES pages, zstd-compressed
together) or in a mapped file's blob at an offset (a page equal to its backing file is never
stored again).
Zero pages are not stored at all: their name is ZERO. Layout: docs/trace-format.md."""
from __future__ import annotations

import contextlib
import os
import struct

from .._native import ffi, lib
from ..analysis_cache import STORED_FILES
from ..digests import short_digest
from ..errors import NativeError, TraceError
from ..trace import MAX_INDEX, TraceWriter, read_records, write_all

PAGE = 4096
CHUNK_PAGES = 64
MAX_SEALED_CHUNKS = 128          # 32 MiB of new pages wait at most for a flush
EAGER_FILE_BYTES = 64 << 20      # a mapped file's pages all named at its first use, up to this
MAX_CACHED_PAGES = 1 << 14       # 64 MiB of verified pages kept by a reader
MAX_CACHED_BLOB_BYTES = 64 << 20  # and decompressed blobs (the one being read may be larger)
MAX_CACHED_FILE_BYTES = 128 << 20 # and mapped files' contents
ZERO = bytes(16)                 # the name of an all-zero page
UNREADABLE = b"\xff" * 16        # a page the kernel would not let us read (past a file's end)
ZERO_PAGE = bytes(PAGE)
INDEX_MAGIC = b"RRVPIDX1"
RECORD = struct.Struct("<16sB7x32sQ")   # page digest, source kind, blob digest, index/offset
FROM_CHUNK, FROM_FILE = 1, 2


def page_digest(data: bytes) -> bytes:
    if data == ZERO_PAGE:
        return ZERO
    return short_digest(data)


def page_digests(data, which: list[int] | None = None) -> list[bytes]:
    """The names of pages `which` (indexes; every page if None) of data, in one native call:
    SHA-256 in libcrypto, with the GIL let go for the whole run (checkpoints/page_digests.c)."""
    n = len(data) // PAGE if which is None else len(which)
    if not n:
        return []
    if which is not None and not 0 <= min(which) <= max(which) < len(data) // PAGE:
        raise ValueError(f"page_digests: an index of {which} is outside {len(data)} bytes")
    out = ffi.new(f"uint8_t[{16 * n}]")
    if lib.rrv_page_digests(ffi.from_buffer(data), ffi.NULL if which is None else
                            ffi.new("uint32_t[]", which), n, out) < 0:
        raise NativeError("libcrypto could not compute SHA-256")
    names = bytes(ffi.buffer(out, 16 * n))
    return [names[i:i + 16] for i in range(0, 16 * n, 16)]


def _zero_where_named(names: bytes, content: bytes) -> bool:
    """Whether every page `names` calls zero is zeros in content: such a name is never checked
    against the file later (the page store holds no page for it), so a list from the cache must
    not call zero a page that is not."""
    at = names.find(ZERO)
    while at >= 0:
        if at % 16 == 0 and content[at // 16 * PAGE:(at // 16 + 1) * PAGE].strip(b"\0"):
            return False
        at = names.find(ZERO, at + (16 if at % 16 == 0 else 1))
    return True


def file_matches(content: bytes, offset: int, data) -> bool:
    """Whether data (whole pages) is the file content at offset, zero-padded past its end up
    to its last page (a mapping's pages wholly past the end are not the file's). Compares in
    place, copying nothing but the last page's bytes past the file's end. data: any buffer
    whose slices are bytes (bytes, or the cffi buffers checkpoints read into)."""
    tail = len(content) - offset        # the file's bytes data covers
    if tail <= len(data) - PAGE or tail <= 0:
        return False
    if tail >= len(data):
        return content.startswith(data, offset)
    return content.startswith(memoryview(data)[:tail], offset) and \
        data[tail:].count(0) == len(data) - tail     # (less than a page)


class PageStoreWriter:
    def __init__(self, trace_dir: str, put_blob):
        self.put_blob = put_blob
        # put_blob is a TraceWriter's: that writer must learn of a failed write of ours too
        # (a full disk), so the trace's end says why, and refuse ours after one of its own.
        owner = getattr(put_blob, "__self__", None)
        self._writing = owner.writing if isinstance(owner, TraceWriter) else contextlib.nullcontext
        self.known: set[bytes] = {ZERO, UNREADABLE}
        self.path = os.path.join(trace_dir, "pages.idx")
        with self._writing():
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                              0o644)
            write_all(self.fd, INDEX_MAGIC)
        # put_blobs: the writer's, storing many blobs in a few calls; else one at a time
        self.put_blobs = getattr(owner, "put_blobs", None) or \
            (lambda datas: [put_blob(d) for d in datas])
        self._chunk: list[tuple[bytes, bytes]] = []
        self._sealed: list[list[tuple[bytes, bytes]]] = []   # full chunks not stored yet
        self._file_records: list[bytes] = []
        self.stored_pages = 0
        # file blob -> the name of each of its pages (by page number), computed once per trace
        # or read from the analysis cache's stored files (every process maps the same libc,
        # and most of its pages are the file's); how many are not yet; which pages.idx holds
        self._file_names: dict[bytes, list[bytes | None]] = {}
        self._file_unnamed: dict[bytes, int] = {}
        self._file_indexed: dict[bytes, bytearray] = {}
        self.hashed_file_pages = 0

    def add_pages(self, names: bytes, data, which: list[int], file=None) -> None:
        """add() for pages `which` of data, named by names (16 bytes a page). file: (blob,
        offset, content) of the file data's region maps from `offset`, if any."""
        known = self.known
        for i in which:
            digest = names[16 * i:16 * i + 16]
            if digest in known:
                continue
            page = data[i * PAGE:(i + 1) * PAGE]
            if file is None:
                known.add(digest)
                self._add_to_chunk(digest, page)
            else:
                self.add(digest, page, (file[0], file[1] + i * PAGE, file[2]))

    def add(self, digest: bytes, data: bytes, file_page=None) -> None:
        """A page a checkpoint holds. file_page: (file blob, offset, file content) when the
        page lies in a mapping of that file: a page equal to the file's is stored as a
        reference to it."""
        if digest in self.known:
            return
        self.known.add(digest)
        if file_page is not None:
            blob, offset, content = file_page
            if file_matches(content, offset, data):
                self._names_of(blob, content)
                self._file_indexed[blob][offset // PAGE] = 1
                self._file_records.append(RECORD.pack(digest, FROM_FILE, blob, offset))
                return
        self._add_to_chunk(digest, data)

    def _add_to_chunk(self, digest: bytes, data: bytes) -> None:
        self._chunk.append((digest, data))
        if len(self._chunk) == CHUNK_PAGES:
            self._sealed.append(self._chunk)
            self._chunk = []
            if len(self._sealed) >= MAX_SEALED_CHUNKS:
                self.flush()

    def file_pages(self, blob: bytes, content: bytes, offset: int, data) -> list[bytes] | None:
        """The page digests of `data` (whole pages) if it is the file's content at `offset`
        (a multiple of PAGE), zero-padded past the file's end as a mapping shows it, and
        those pages indexed as references into the file's blob; None if it is not. Only
        compares bytes: each file page's digest is computed once per trace."""
        if not file_matches(content, offset, data):
            return None
        return self.file_page_digests(blob, content, offset, len(data) // PAGE)

    def file_page_digests(self, blob: bytes, content: bytes, offset: int,
                          npages: int) -> list[bytes]:
        """The names of the file's npages pages from `offset` on (zero-padded past its end),
        indexed as references into its blob unless known, for a caller that knows the memory
        holds them; every process maps libc's text the same, and asks again."""
        names = self._names_of(blob, content)
        first, end = offset // PAGE, offset // PAGE + npages
        missing = [i for i in range(first, end) if names[i] is None] if \
            self._file_unnamed[blob] else []
        if missing:
            for i, name in zip(missing, self._hash_pages(content, missing)):
                names[i] = name
            self._file_unnamed[blob] -= len(missing)
        indexed = self._file_indexed[blob]
        if indexed.find(0, first, end) >= 0:
            for i in range(first, end):
                if not indexed[i]:
                    indexed[i] = 1
                    if names[i] not in self.known:
                        self.known.add(names[i])
                        self._file_records.append(RECORD.pack(names[i], FROM_FILE, blob, i * PAGE))
        return names[first:end]

    def _names_of(self, blob: bytes, content: bytes) -> list[bytes | None]:
        """The file's page names: from the analysis cache's stored files, else all computed
        now and kept there, unless the file is over EAGER_FILE_BYTES: then each is computed
        when first asked for (None until then)."""
        names = self._file_names.get(blob)
        if names is None:
            pages = -(-len(content) // PAGE)
            raw = STORED_FILES.page_names(blob.hex(), pages,
                                          lambda which: self._hash_pages(content, which, False))
            if raw is not None and not _zero_where_named(raw, content):
                raw = None
            if raw is None and len(content) <= EAGER_FILE_BYTES:
                raw = b"".join(self._hash_pages(content, range(pages)))
                STORED_FILES.add_page_names(blob.hex(), raw)
            names = self._file_names[blob] = [None] * pages if raw is None else \
                [raw[i:i + 16] for i in range(0, 16 * pages, 16)]
            self._file_unnamed[blob] = pages if raw is None else 0
            self._file_indexed[blob] = bytearray(pages)
        return names

    def _hash_pages(self, content: bytes, which, count: bool = True) -> list[bytes]:
        """The names of pages `which` (ascending) of a file's content, the last zero-padded
        past its end. count: in hashed_file_pages."""
        which = list(which)
        whole = [i for i in which if (i + 1) * PAGE <= len(content)]
        names = page_digests(content, whole) if whole else []
        for i in which[len(whole):]:
            names.append(page_digest(content[i * PAGE:(i + 1) * PAGE].ljust(PAGE, b"\0")))
        self.hashed_file_pages += len(which) if count else 0
        return names

    def flush(self, extra: list = ()) -> list[bytes]:
        """Store every page added so far and index it (pages.idx before the checkpoint naming
        them), with the `extra` blobs, all in one put_blobs. Returns extra's digests."""
        chunks = self._sealed + ([self._chunk] if self._chunk else [])
        self._sealed, self._chunk = [], []
        digests = self.put_blobs([b"".join(data for _, data in c) for c in chunks] +
                                 list(extra))
        records = self._file_records
        for chunk, blob in zip(chunks, digests):
            records += [RECORD.pack(d, FROM_CHUNK, blob, i) for i, (d, _) in enumerate(chunk)]
            self.stored_pages += len(chunk)
        if records:
            with self._writing():
                write_all(self.fd, b"".join(records))
        self._file_records = []
        return digests[len(chunks):]

    def close(self) -> None:
        try:
            self.flush()
            with self._writing():
                os.fsync(self.fd)
        except TraceError:
            pass    # a failed write, which the trace writer reports; no checkpoint names these
        finally:
            os.close(self.fd)


class PageStoreReader:
    def __init__(self, trace):
        self.trace = trace
        path = os.path.join(trace.path, "pages.idx")
        data = trace.read_file("pages.idx", MAX_INDEX, "page index",
                               f"{trace.path}: pages.idx is missing")
        records = read_records(data, path, INDEX_MAGIC, RECORD, trace.complete, "page index")
        self.sources: dict[bytes, tuple[int, bytes, int]] = {}
        for n, (d, kind, blob, where) in enumerate(records):
            if kind not in (FROM_CHUNK, FROM_FILE) or (kind == FROM_CHUNK and where >= CHUNK_PAGES):
                raise TraceError(f"{path}: corrupted page index at record {n}")
            self.sources.setdefault(d, (kind, blob, where))
        self.duplicates = len(records) - len(self.sources)     # the first record is used
        self._blobs: dict[bytes, bytes] = {}     # decompressed, oldest first
        self._files: dict = {}                   # recorded files, oldest first
        self._blob_bytes = 0
        # Most pages are the same from one checkpoint to the next: a worker that keeps this
        # reader across segments decompresses and checks each page once.
        self._verified: dict[bytes, bytes] = {}

    def _blob(self, digest: bytes) -> bytes:
        data = self._blobs.get(digest)
        if data is None:
            # Every page taken from it is checked against its own digest below.
            data = self.trace.blob(digest, verify=False)
            while self._blobs and self._blob_bytes + len(data) > MAX_CACHED_BLOB_BYTES:
                self._blob_bytes -= len(self._blobs.pop(next(iter(self._blobs))))  # oldest
            self._blobs[digest] = data
            self._blob_bytes += len(data)
        return data

    def page(self, digest: bytes) -> bytes | None:
        """The page's bytes; None for a page that was unreadable when captured."""
        if digest == ZERO:
            return ZERO_PAGE
        if digest == UNREADABLE:
            return None
        page = self._verified.get(digest)
        if page is not None:
            return page
        src = self.sources.get(digest)
        if src is None:
            raise TraceError(f"{self.trace.path}: page {digest.hex()} is not in the page store")
        kind, blob, where = src
        data = self._blob(blob)
        page = data[where * PAGE:(where + 1) * PAGE] if kind == FROM_CHUNK else \
            data[where:where + PAGE].ljust(PAGE, b"\0")
        if len(page) != PAGE or page_digest(page) != digest:
            raise TraceError(f"{self.trace.path}: page {digest.hex()} in blob {blob.hex()} "
                             f"is corrupted")
        if len(self._verified) >= MAX_CACHED_PAGES:
            self._verified.clear()
        self._verified[digest] = page
        return page

    def recorded_file(self, index: int):
        """files.jsonl entry `index` as exec_image.RecordedFile, read and checked once per
        reader (restores of every segment a worker verifies map the same files); at most
        MAX_CACHED_FILE_BYTES of them are kept, the oldest dropped first."""
        from ..exec_image import recorded_file
        f = self._files.pop(index, None) or recorded_file(self.trace, index)
        self._files[index] = f                    # the newest last
        while sum(len(x.data) for x in self._files.values()) > MAX_CACHED_FILE_BYTES \
                and len(self._files) > 1:
            self._files.pop(next(iter(self._files)))
        return f

    def blobs_for(self, digests) -> set[bytes]:
        return {self.sources[d][1] for d in digests if d in self.sources}
