"""The recorder's per-exec work is done once per trace: a known file is not read and hashed
again, a file page's digest is computed once, the vDSO is parsed once; and what could change
unseen (a file modified within a timestamp tick, a file mapped shared and writable) is read
and hashed again."""
from __future__ import annotations

import collections
import mmap
import hashlib
import os
import shutil

import pytest

from rrverify import exec_image
from rrverify import analysis_cache
from rrverify.analysis_cache import KNOWN_FILES
from rrverify.digests import content_check
from rrverify.errors import TraceError
from rrverify.checkpoints import capture, pages
from rrverify.checkpoints.pages import FROM_FILE, ZERO, PageStoreReader, PageStoreWriter
from rrverify.recorder.record import record
from rrverify.replayer.replay import replay
from rrverify.trace import FileToRead, Trace
from conftest import fresh_vdso_analysis

TRUE = shutil.which("true")
ENV = shutil.which("env")


@pytest.fixture
def hashed(monkeypatch) -> collections.Counter:
    """content length -> how many times a content of that length was hashed."""
    count = collections.Counter()
    real = exec_image.content_digest

    def counting(data):
        count[len(data)] += 1
        return real(data)

    monkeypatch.setattr(exec_image, "content_digest", counting)
    return count


@pytest.fixture
def elf_parses(monkeypatch) -> list:
    """One item per vDSO image parsed (pyelftools is imported where it is used)."""
    from elftools.elf import elffile
    from rrverify.recorder import patch_sites  # noqa: F401  (it keeps the real ELFFile)
    parses = []
    real = elffile.ELFFile
    monkeypatch.setattr(elffile, "ELFFile", lambda f: parses.append(1) or real(f))
    return parses


@pytest.fixture
def no_known_files(monkeypatch, tmp_path) -> None:
    """No file digest of an earlier recording is known (analysis_cache.KNOWN_FILES)."""
    monkeypatch.setenv("RRVERIFY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(KNOWN_FILES, "_entries", None)
    monkeypatch.setattr(KNOWN_FILES, "_added", {})
    monkeypatch.setattr(KNOWN_FILES, "_cleared", False)
    for cache in analysis_cache._ALL:      # a wrong entry found here closes them (clear())
        if isinstance(cache, analysis_cache.ContentCache):
            monkeypatch.setattr(cache, "_closed", False)
            monkeypatch.setattr(cache, "_entries", {})
            monkeypatch.setattr(cache, "_dirty", set())


@pytest.fixture
def ids(monkeypatch, no_known_files) -> exec_image.FileIdentities:
    """A trace's file identities, for files written by the test: their ctime cannot be set
    back, so the racy window is closed instead."""
    monkeypatch.setattr(exec_image, "RACY_NS", 0)
    return exec_image.FileIdentities()


def old_file(tmp_path, data: bytes):
    """A file whose mtime is well in the past."""
    path = tmp_path / "f"
    path.write_bytes(data)
    os.utime(path, ns=(10**18, 10**18))
    return str(path)


def test_a_known_file_is_not_read_or_hashed_again(hashed, ids, tmp_path):
    path = old_file(tmp_path, b"x" * 10000)
    ident, data, where = ids.identify(path, path)
    assert data == b"x" * 10000 and ids.reads == 1
    ident2, data2, where2 = ids.identify(path, path)
    assert (ident2, data2, where2) == (ident, None, where)
    assert ids.reads == 1 and hashed[10000] == 1
    # A system library, as every exec meets it.
    ids.identify(TRUE, TRUE)
    ids.identify(TRUE, TRUE)
    assert ids.reads == 2


def test_a_file_an_earlier_recording_hashed_is_named_without_being_read(hashed, ids,
                                                                       tmp_path):
    """The next trace's first meeting of it: its digest comes from the cache, and its bytes
    are read by the trace writer's thread (FileToRead), checked against that digest."""
    path = old_file(tmp_path, b"k" * 9000)
    ident, data, _ = ids.identify(path, path)
    assert data == b"k" * 9000 and hashed[9000] == 1
    KNOWN_FILES.save()
    next_trace = exec_image.FileIdentities()
    KNOWN_FILES._entries = None                         # loaded afresh, as a new recorder does
    ident2, data2, _ = next_trace.identify(path, path)
    assert ident2 == ident and isinstance(data2, FileToRead) and len(data2) == 9000
    assert next_trace.reads == 0 and hashed[9000] == 1
    assert data2.read() == b"k" * 9000 and data2.get() == b"k" * 9000


def test_a_digest_damaged_anywhere_fails_the_content_check():
    """The check value a known file's content is read against is seeded by all of the SHA-256
    it is named by: a digest damaged in any digit no longer matches it."""
    data = b"q" * 3000
    sha = exec_image.content_digest(data)
    check = content_check(data, sha)
    assert content_check(data, sha) == check and content_check(b"r" * 3000, sha) != check
    for i in (0, 15, 16, 31, 63):
        damaged = sha[:i] + ("1" if sha[i] == "0" else "0") + sha[i + 1:]
        assert content_check(data, damaged) != check, i


def test_content_read_by_the_writer_is_checked_against_the_digest_it_was_named_by(ids,
                                                                                tmp_path):
    path = old_file(tmp_path, b"m" * 5000)
    ident, _, _ = ids.identify(path, path)
    KNOWN_FILES.save()
    # The same identity with other bytes: a stale cache entry (the digest and the check value
    # of other content). All are dropped.
    known = exec_image._known_identity(os.stat(path))
    KNOWN_FILES._entries = {known: "00" * 32 + "/" + content_check(b"o" * 5000, "00" * 32)}
    wrong = exec_image.FileIdentities().identify(path, path)[1]
    with pytest.raises(TraceError, match="not the SHA-256 0000000000000000... the rrverify "
                                         "cache gave"):
        wrong.read()
    with pytest.raises(TraceError, match="could not be stored"):
        wrong.get()
    # What this recording filed under any digest may be under a wrong one: none of it is kept.
    from rrverify.recorder.patch_plan import PLANS
    PLANS.add("cd" * 32, "1", ["refused", "x"])
    assert PLANS.entries("cd" * 32) == {} and not PLANS._dirty
    PLANS.save()                            # the recording's end: the next one caches again
    PLANS.add("cd" * 32, "1", ["refused", "x"])
    assert PLANS.entries("cd" * 32) == {"1": ["refused", "x"]}
    KNOWN_FILES.save()
    KNOWN_FILES._entries = None
    assert KNOWN_FILES.get(known) is None
    # Right entry, but the file changes before the writer reads it.
    KNOWN_FILES.add(known, ident["sha256"], content_check(b"m" * 5000, ident["sha256"]))
    later = exec_image.FileIdentities().identify(path, path)[1]
    assert isinstance(later, FileToRead)
    with open(path, "r+b") as f:
        f.write(b"n")
    with pytest.raises(TraceError, match="changed while it was being recorded"):
        later.read()
    # A writer that failed before reading it: readers are told, not left waiting.
    KNOWN_FILES._entries = None
    os.utime(path, ns=(10**18, 10**18))
    ids.identify(path, path)
    lost = exec_image.FileIdentities().identify(path, path)[1]
    lost.abandon(OSError(28, "No space left on device"))
    with pytest.raises(TraceError, match="No space left"):
        lost.get()


def test_a_changed_file_is_read_again(ids, tmp_path):
    path = old_file(tmp_path, b"a" * 5000)
    first, _, _ = ids.identify(path, path)
    with open(path, "r+b") as f:            # same size, and its mtime put back
        f.write(b"b")
    os.utime(path, ns=(10**18, 10**18))
    second, data, _ = ids.identify(path, path)
    assert data == b"b" + b"a" * 4999 and ids.reads == 2
    assert second["sha256"] != first["sha256"]


def test_a_file_changed_just_before_it_was_hashed_is_hashed_again(tmp_path):
    ids = exec_image.FileIdentities()
    path = tmp_path / "fresh"
    path.write_bytes(b"c" * 100)           # its timestamps are now: within RACY_NS
    ids.identify(str(path), str(path))
    _, data, _ = ids.identify(str(path), str(path))
    assert data == b"c" * 100 and ids.reads == 2


def test_a_file_mapped_shared_and_writable_is_hashed_each_time(ids, tmp_path):
    path = old_file(tmp_path, b"d" * 8192)
    ro = os.open(path, os.O_RDONLY)
    rw = os.open(path, os.O_RDWR)
    try:
        ids.identify(f"/proc/self/fd/{ro}", path)      # read-only: known from now on
        ids.identify(f"/proc/self/fd/{ro}", path)
        assert ids.reads == 1
        with mmap.mmap(rw, 8192, mmap.MAP_SHARED) as m:
            ids.identify(f"/proc/{os.getpid()}/fd/{rw}", path)
            assert ids.reads == 2
            m[0:1] = b"e"                  # no timestamp need show this
            _, data, _ = ids.identify(f"/proc/self/fd/{ro}", path)
            assert ids.reads == 3 and data[:2] == b"ed"
        # Unmapped, the file stays suspect for the rest of the trace, whatever path names it.
        ids.identify(path, path)
        assert ids.reads == 4
    finally:
        os.close(ro)
        os.close(rw)


def test_a_private_mapping_of_a_writable_descriptor_keeps_the_identity(ids, tmp_path):
    path = old_file(tmp_path, b"f" * 4096)
    rw = os.open(path, os.O_RDWR)
    try:
        with mmap.mmap(rw, 4096, mmap.MAP_PRIVATE):
            ids.identify(f"/proc/self/fd/{rw}", path)
            ids.identify(f"/proc/self/fd/{rw}", path)
        assert ids.reads == 1
    finally:
        os.close(rw)


def test_file_matches_pads_the_last_page_and_refuses_pages_past_the_end():
    content = bytes(range(256)) * 20                   # 5120 bytes: 1.25 pages
    page2 = content[4096:] + bytes(4096 - 1024)
    assert pages.file_matches(content, 0, content[:4096] + page2)
    assert pages.file_matches(content, 4096, page2)
    assert not pages.file_matches(content, 4096, page2[:-1] + b"\1")
    assert not pages.file_matches(content, 4096, page2 + bytes(4096))   # a page past the end
    assert not pages.file_matches(content, 8192, bytes(4096))
    assert not pages.file_matches(content, 0, b"\1" + content[1:4096])


def test_the_vdso_is_parsed_once_and_patched_alike(elf_parses, monkeypatch, tmp_path):
    """Once per image in a process, and once per image across processes (the analysis cache:
    a fresh process's first exec finds its functions without parsing)."""
    image = fresh_vdso_analysis(monkeypatch, tmp_path)
    first = exec_image.vdso_patches(image, os.getpid())
    assert exec_image.vdso_patches(bytes(image), os.getpid()) == first
    assert len(elf_parses) == 1
    exec_image.VDSO_FUNCTIONS.save()
    exec_image._VDSO_PATCHES.clear()              # as a new recorder process starts
    exec_image.VDSO_FUNCTIONS._entries.clear()
    assert exec_image.vdso_patches(image, os.getpid()) == first and len(elf_parses) == 1
    stubs, gadget = first
    assert {stub for _, stub in stubs} >= {exec_image._stub(228, 64)}     # clock_gettime
    assert any(off + 5 == gadget for off, _ in stubs)


def test_a_chain_of_execs_hashes_each_file_and_file_page_once(hashed, elf_parses, monkeypatch,
                                                              no_known_files, tmp_path):
    """Every exec of `env env env env true` maps the same ld.so and libc: each is read and
    hashed once, and each of their pages that a checkpoint holds is hashed once, however many
    checkpoints hold it; the vDSO is parsed at most once; and the trace verifies."""
    digests = collections.Counter()
    real, real_run = pages.page_digest, pages.page_digests

    def counting(data):
        d = real(data)
        digests[d] += 1
        return d

    def counting_run(data, which=None):
        names = real_run(data, which)
        digests.update(names)
        return names

    monkeypatch.setattr(pages, "page_digest", counting)
    monkeypatch.setattr(pages, "page_digests", counting_run)
    monkeypatch.setattr(capture, "page_digests", counting_run)
    trace_dir = str(tmp_path / "t")
    res = record([ENV, ENV, ENV, ENV, TRUE], trace_dir)
    assert res.complete and res.exit_status == 0
    t = Trace(trace_dir)
    files = t.files
    libc = [f for f in files if "libc.so" in f["path"]]
    assert libc and hashed[libc[0]["size"]] == 1
    assert len(elf_parses) <= 1
    file_pages = {d for d, (kind, _, _) in PageStoreReader(t).sources.items() if kind == FROM_FILE}
    assert len(file_pages) > 100
    again = {d: n for d, n in digests.items() if d in file_pages and n > 1}
    assert not again, f"{len(again)} file pages hashed more than once"
    # Five exec checkpoints and the final one: every exec's vDSO is patched alike.
    cps = [t.checkpoint(k) for k in range(len(t.checkpoints))]
    assert len(cps) == 6
    vdsos = set()
    for c in cps:
        pm = t.blob(c["pagemap_blob"])
        r = next(r for r in c["regions"] if r["path"] == "[vdso]")
        n = (r["end"] - r["start"]) // 4096
        vdsos.add(pm[r["first_page"] * 16:(r["first_page"] + n) * 16])
    assert len(vdsos) == 1 and len({c["gadget"] for c in cps}) == 1
    assert replay(t).status == "verified"


def test_a_page_store_references_file_pages_once(tmp_path, monkeypatch):
    """A file's pages are named once, all at its first use, and indexed once each; a later
    recording reads their names from the analysis cache's stored files instead."""
    monkeypatch.setenv("RRVERIFY_CACHE_DIR", str(tmp_path / "cache"))
    content = os.urandom(3 * 4096 + 100)
    blob = hashlib.sha256(content).digest()
    store = PageStoreWriter(str(tmp_path), lambda data: b"\2" * 32)
    try:
        digests = store.file_pages(blob, content, 0, content[:8192])
        again = store.file_pages(blob, content, 4096, content[4096:12288])
        assert digests[1] == again[0] and store.hashed_file_pages == 4
        last = store.file_pages(blob, content, 12288, content[12288:] + bytes(3996))
        assert last == [pages.page_digest(content[12288:].ljust(4096, b"\0"))]
        changed = bytes([content[0] ^ 1]) + content[1:4096]     # (os.urandom may give a 0)
        assert store.file_pages(blob, content, 0, changed) is None
        store.flush()
    finally:
        store.close()
    with open(tmp_path / "pages.idx", "rb") as f:
        records = f.read()[8:]
    assert len(records) == 4 * pages.RECORD.size      # one record per distinct page
    assert ZERO not in digests
    (tmp_path / "later").mkdir()
    later = PageStoreWriter(str(tmp_path / "later"), lambda data: b"\2" * 32)
    try:
        assert later.file_pages(blob, content, 0, content[:8192]) == digests
        assert later.hashed_file_pages == 0
    finally:
        later.close()


def _bytes_read_by_checkpoints(monkeypatch, memory_reads, tmp_path, name, unchanged) -> int:
    """What the checkpoints of a recording of python3 read of its memory, with the file
    identities' unchanged() as given (None: the real one)."""
    memory_reads[0] = 0
    total = memory_reads
    if unchanged is not None:
        monkeypatch.setattr(exec_image.FileIdentities, "unchanged", unchanged)
    res = record([shutil.which("python3"), "-c", "pass"], str(tmp_path / name))
    assert res.complete
    assert replay(Trace(str(tmp_path / name))).status == "verified"
    return total[0]


def test_pages_a_process_never_copied_from_its_files_are_not_read(monkeypatch, memory_reads,
                                                                   tmp_path):
    """python3's text (several MiB, unchanged since it was hashed) is not read at its
    checkpoints; with the file's times showing a change it is, and either way the trace
    verifies."""
    text = sum(e - s for s, e, perms, path in _maps_of(shutil.which("python3"))
               if perms == "r-xp")
    skipped = _bytes_read_by_checkpoints(monkeypatch, memory_reads, tmp_path, "a", None)
    read_all = _bytes_read_by_checkpoints(monkeypatch, memory_reads, tmp_path, "b",
                                          lambda self, path, sha256: False)
    assert read_all - skipped > text, (read_all, skipped, text)


def _maps_of(exe: str):
    """The mappings of exe's own file in a process running it (read from a live one)."""
    import subprocess
    import time
    p = subprocess.Popen([exe, "-c", "import time; time.sleep(5)"])
    try:
        time.sleep(0.3)
        real = os.path.realpath(exe)
        with open(f"/proc/{p.pid}/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and os.path.realpath(parts[5]) == real:
                    s, e = (int(x, 16) for x in parts[0].split("-"))
                    yield s, e, parts[1], parts[5]
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("kernel_query", [True, False], ids=["procmap-query", "maps-file"])
def test_the_region_at_an_address_is_the_one_maps_lists(kernel_query, monkeypatch, tmp_path):
    """The patcher asks the kernel for the one mapping of a syscall site (PROCMAP_QUERY) or,
    on a kernel without it, reads the maps file: both answer what /proc/PID/maps says, for
    files, a deleted file, a memfd, shared memory, the heap, the stack and the vDSO."""
    import errno
    from rrverify._native import ffi, lib
    if kernel_query and lib.rrv_vma_at(os.getpid(), 0, ffi.new("struct rrv_vma *")) < 0 \
            and ffi.errno in (errno.ENOTTY, errno.EINVAL):
        pytest.skip("this kernel has no PROCMAP_QUERY (before Linux 6.11)")
    monkeypatch.setattr(exec_image, "_vma_query_works", kernel_query)
    pid = os.getpid()
    gone = tmp_path / "deleted file"
    gone.write_bytes(b"x" * 8192)
    memfd = os.memfd_create("rrv-test")
    os.ftruncate(memfd, 8192)
    with open("/dev/zero", "rb") as zero, open(gone, "rb") as g, \
            mmap.mmap(zero.fileno(), 8192, mmap.MAP_SHARED, mmap.PROT_READ), \
            mmap.mmap(g.fileno(), 8192, mmap.MAP_PRIVATE, mmap.PROT_READ), \
            mmap.mmap(memfd, 8192, mmap.MAP_SHARED):
        gone.unlink()
        regions = [r for r in exec_image.read_maps(pid) if r["path"] != "[vsyscall]"]
        paths = {r["path"] for r in regions}
        assert {f"{gone} (deleted)", "/memfd:rrv-test (deleted)", "[heap]", "[stack]",
                "[vdso]"} <= paths
        assert any(r["perms"][3] == "s" for r in regions)
        for r in regions:
            assert exec_image.region_at(pid, r["start"]) == r
            assert exec_image.region_at(pid, r["end"] - 1) == r
    os.close(memfd)
    assert exec_image.region_at(pid, 4096) is None
    assert exec_image._vma_query_works == kernel_query


def test_a_file_left_unread_after_a_failed_write_counts_as_a_wrong_digest(ids, tmp_path):
    """The trace writer reads no file after a failed write: the digest a known file was named
    by (and patch plans filed under) is then never checked, and is dropped as a wrong one."""
    from rrverify.trace import TraceWriter
    path = old_file(tmp_path, b"u" * 3000)
    ids.identify(path, path)
    KNOWN_FILES.save()
    KNOWN_FILES._entries = None
    _, known, _ = exec_image.FileIdentities().identify(path, path)
    assert isinstance(known, FileToRead)
    writer = TraceWriter(str(tmp_path / "t"), {"command": ["x"]})
    os.rmdir(os.path.join(writer.path, "blobs"))
    with open(os.path.join(writer.path, "blobs"), "w"):     # no blob can be written
        pass
    writer.add_file({"path": "/a", "size": 5, "sha256": "ee" * 32, "blob": "ee" * 32}, b"first")
    writer.add_file({"path": path, "size": 3000, "sha256": known.sha256,
                     "blob": known.sha256}, known)
    writer._frames_out.put(None)       # the writer's thread ends (close() also writes more)
    writer._writer.join()
    with pytest.raises(TraceError, match="could not be stored"):
        known.get()
    assert KNOWN_FILES._cleared and KNOWN_FILES.get(exec_image._known_identity(os.stat(path))) \
        is None
