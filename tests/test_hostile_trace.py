"""A trace is untrusted input (DESIGN.md §4, docs/trace-format.md §12): a FIFO, a device or a
symbolic link in place of a trace file, JSON of the wrong shape, and bytes that do not match
their hashes all give one line naming the file and exit 2, never a hang, a traceback or
"verified". Also: `rrverify check`, and a disk that fills up while recording."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from rrverify.trace import Trace
from conftest import assert_one_line_error, record, replay, run_cli
from traceedit import rehash

TIMEOUT = 60


def _a_file_blob(trace) -> str:
    line = (trace / "files.jsonl").read_text().splitlines()[0]
    h = json.loads(line)["blob"]
    return f"blobs/{h[:2]}/{h}.zst"


def _name(trace, which: str) -> str:
    return _a_file_blob(trace) if which == "blob" else which


FILES = ["manifest.json", "events.zst", "events.idx", "files.jsonl", "checkpoints.jsonl",
         "checkpoints/000000.json", "pages.idx", "processes.jsonl", "blob"]


@pytest.mark.parametrize("which", FILES)
@pytest.mark.parametrize("how", ["fifo", "dev-zero"])
def test_a_special_file_in_place_of_a_trace_file(which, how, trace):
    name = _name(trace, which)
    path = trace / name
    path.unlink()
    if how == "fifo":
        os.mkfifo(path)
        why = "not a regular file"
    else:
        os.symlink("/dev/zero", path)
        why = "not a regular file (a symbolic link)"
    assert_one_line_error(replay(trace, timeout=TIMEOUT), 2, f"{trace}/{name}: {why}")
    assert_one_line_error(run_cli("check", trace, timeout=TIMEOUT), 2, f"{name}: {why}")


def test_a_symlink_to_a_regular_file_is_refused_too(trace, tmp_path):
    outside = tmp_path / "elsewhere.json"
    shutil.copy(trace / "checkpoints" / "000001.json", outside)
    (trace / "checkpoints" / "000001.json").unlink()
    os.symlink(outside, trace / "checkpoints" / "000001.json")
    assert_one_line_error(replay(trace, timeout=TIMEOUT), 2,
                          "checkpoints/000001.json: not a regular file (a symbolic link)")


def test_a_directory_leading_out_of_the_trace_is_refused(trace, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.move(trace / "checkpoints", outside)
    os.symlink(outside, trace / "checkpoints")
    assert_one_line_error(replay(trace, timeout=TIMEOUT), 2,
                          "checkpoints/000000.json: leads out of the trace")


def test_the_trace_itself_may_be_a_symlink(good_trace, tmp_path):
    os.symlink(good_trace, tmp_path / "latest")
    proc = replay(tmp_path / "latest", timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_fifo_checkpoint_is_a_trace_error_for_its_segments(trace):
    from rrverify.replayer.segment import verify_segment
    (trace / "checkpoints" / "000002.json").unlink()
    os.mkfifo(trace / "checkpoints" / "000002.json")
    report = verify_segment(str(trace), 2)
    assert report["status"] == "trace-error", report
    assert "000002.json: not a regular file" in report["error"]


def _edit_json(path, change) -> None:
    value = json.loads(path.read_text())
    value = change(value) or value
    path.write_text(value if isinstance(value, str) else json.dumps(value))


def _deep(_):
    return "[" * 100000 + "]" * 100000     # too deep for json.loads: RecursionError


MANIFEST_LIES = {
    "version 3": (lambda m: m.update(version=3),
                  "trace format version 3 is older than this rrverify reads (version 4); "
                  "re-record it"),
    "cpuid a list": (lambda m: m["host"].update(cpuid=[1, 2]), "'host.cpuid'"),
    "cpuid leaf of strings": (lambda m: m["host"]["cpuid"].update({"0x1.0": ["a"] * 4}),
                              "'host.cpuid'"),
    "stats a list": (lambda m: m.update(stats=[]), "'stats'"),
    "rlimit a string": (lambda m: m["rlimits"][0].__setitem__(1, "7"), "'rlimits'"),
    "command of ints": (lambda m: m.update(command=[1]), "'command'"),
    "integrity dropped": (lambda m: m.pop("integrity") and None, "has no integrity record"),
    "integrity a bool size": (lambda m: m["integrity"]["pages.idx"].update(size=True),
                              "'integrity.pages.idx'"),
    "deep nesting": (_deep, "corrupted manifest"),
}


@pytest.mark.parametrize("lie", sorted(MANIFEST_LIES))
def test_manifest_of_the_wrong_shape(lie, trace):
    change, fragment = MANIFEST_LIES[lie]
    _edit_json(trace / "manifest.json", change)
    assert_one_line_error(replay(trace, timeout=TIMEOUT), 2, fragment)


CHECKPOINT_LIES = {
    "register a string": lambda c: c["regs"].update(r12="1"),
    "id a bool": lambda c: c.update(id=True),
    "tid a list": lambda c: c.update(tid=[]),
    "altstack of 2": lambda c: c["signals"].update(altstack=[0, 2]),
    "actions a dict": lambda c: c["signals"].update(actions={"1": 2}),
    "region a list": lambda c: c["regions"].__setitem__(0, [1, 2]),
    "region start a bool": lambda c: c["regions"][0].update(first_page=False, start=False),
    "signals a list": lambda c: c.update(signals=[]),
    "pagemap uppercase": lambda c: c.update(pagemap=c["pagemap"].upper()),
    "deep nesting": _deep,
}


@pytest.mark.parametrize("lie", sorted(CHECKPOINT_LIES))
def test_checkpoint_of_the_wrong_shape(lie, trace):
    """Hashes rebuilt: only the checks of the checkpoint's fields stand in the way."""
    _edit_json(trace / "checkpoints" / "000001.json", CHECKPOINT_LIES[lie])
    rehash(trace)
    proc = replay(trace, "--segment", 1, timeout=TIMEOUT)
    assert_one_line_error(proc, 2, "checkpoint 1 is corrupted")


def test_checkpoint_edited_without_its_hash(trace):
    _edit_json(trace / "checkpoints" / "000001.json", lambda c: c["regs"].update(r12=1))
    assert_one_line_error(replay(trace, timeout=TIMEOUT), 2,
                          "checkpoint 1 is corrupted (hash mismatch)")


@pytest.mark.parametrize("name,what", [("files.jsonl", "table"), ("checkpoints.jsonl", "table"),
                                       ("pages.idx", "page index"), ("events.idx", "frame index"),
                                       ("processes.jsonl", "table")])
def test_a_file_that_does_not_match_the_manifest_integrity(name, what, trace):
    data = bytearray((trace / name).read_bytes())
    data[-3] ^= 1
    (trace / name).write_bytes(bytes(data))
    assert_one_line_error(replay(trace, timeout=TIMEOUT), 2,
                          f"{name}: corrupted {what} (it does not match the manifest's "
                          f"integrity record)")


def test_an_index_line_of_the_wrong_type(trace):
    p = trace / "checkpoints.jsonl"
    rows = [json.loads(line) for line in p.read_text().splitlines()]
    rows[1]["event"] = str(rows[1]["event"])
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rehash(trace)
    assert_one_line_error(replay(trace, timeout=TIMEOUT), 2, "checkpoints.jsonl: corrupted at line 2")


PROCESS_LIES = {
    "a second root": lambda rows: rows + [{"index": 1, "pid": 7, "parent": None,
                                           "parent_event": None}],
    "a parent of its own": lambda rows: rows + [{"index": 1, "pid": 7, "parent": 1,
                                                 "parent_event": 0}],
    "the first with a parent": lambda rows: [dict(rows[0], parent=0, parent_event=0)],
    "a pid of the wrong type": lambda rows: [dict(rows[0], pid="1")],
}


@pytest.mark.parametrize("lie", sorted(PROCESS_LIES))
def test_a_process_table_of_the_wrong_shape(lie, trace):
    p = trace / "processes.jsonl"
    rows = PROCESS_LIES[lie]([json.loads(line) for line in p.read_text().splitlines()])
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rehash(trace)
    line = assert_one_line_error(replay(trace, timeout=TIMEOUT), 2, "processes.jsonl: corrupted at line")
    assert "Traceback" not in line


def test_blob_with_trailing_bytes_is_corrupted(trace):
    name = _a_file_blob(trace)
    with open(trace / name, "ab") as f:
        f.write(b"tail")
    assert_one_line_error(run_cli("check", trace, timeout=TIMEOUT), 2, "is corrupted",
                          "not exactly one whole zstd frame")


def test_check_reads_everything(good_trace, trace):
    proc = run_cli("check", good_trace, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    t = Trace(str(good_trace))
    line = proc.stdout.decode().strip()
    assert line.startswith(f"ok: 1 process, {t.event_count} events, {len(t.frames)} frames, "
                           f"{len(t.checkpoints)} checkpoints, "), line
    # A page no replay of this trace reads (the last chunk's last page, if only the last
    # checkpoint holds it) still fails check: check reads every page of pages.idx.
    from rrverify.checkpoints.pages import INDEX_MAGIC, RECORD
    data = (trace / "pages.idx").read_bytes()
    last = RECORD.unpack_from(data, len(data) - RECORD.size)
    blob = last[2].hex()
    (trace / "blobs" / blob[:2] / f"{blob}.zst").unlink()
    assert data[:8] == INDEX_MAGIC
    assert_one_line_error(run_cli("check", trace, timeout=TIMEOUT), 2, f"blob {blob} is missing")


def test_check_a_trace_of_mapped_files(programs, tmp_path):
    """File mappings of every kind, /dev/zero's (no file behind it) too."""
    trace = tmp_path / "t"
    assert record(trace, programs["file_mappings"], tmp_path, timeout=TIMEOUT).returncode == 0
    proc = run_cli("check", trace, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"ok: ")


def _mount_tmpfs(path, kib: int) -> bool:
    os.makedirs(path, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_disk_full_while_recording(tmp_path):
    """A trace directory that fills up: one line, the manifest says why, and the trace
    verifies up to where it ends."""
    if os.geteuid() != 0 or not os.path.exists("/bin/dd"):
        pytest.skip("needs root (to mount a small tmpfs) and /bin/dd")
    dd = ["/bin/dd", "if=/dev/urandom", "of=/dev/null", "bs=4096"]
    base = tmp_path / "base"
    assert record(base, *dd, "count=4", timeout=TIMEOUT).returncode == 0
    kib = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(base) for f in fs) >> 10
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, kib + 400):     # room for the start and a few frames of random data
        pytest.skip("cannot mount a tmpfs here")
    try:
        trace = mnt / "t"
        proc = record(trace, *dd, "count=4000", timeout=120)
        assert_one_line_error(proc, 2, "rrverify: record: cannot write the trace: no space left "
                                       "on device")
        m = json.loads((trace / "manifest.json").read_text())
        assert m["complete"] is False
        assert m["end"]["reason"] == "cannot write the trace: no space left on device"
        assert "integrity" in m
        t = Trace(str(trace))
        assert t.event_count > 10 and t.checkpoints
        rep = replay(trace, timeout=TIMEOUT)
        assert rep.returncode == 0, rep.stdout + rep.stderr
        assert b"incomplete trace: verified up to its end" in rep.stdout
        assert run_cli("check", trace, timeout=TIMEOUT).returncode == 0
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(directory) -> None:
    """Take every free byte of the filesystem holding directory."""
    fd = os.open(os.path.join(directory, "filler"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\xff" * 512)
    except OSError:
        pass
    finally:
        os.close(fd)


@pytest.mark.parametrize("first_manifest", ["large", "small", "only-it-fails"])
def test_disk_full_at_the_final_manifest(first_manifest, tmp_path):
    """The disk fills up before the recording ends: the final manifest is written in place of
    the first if it fits there, and otherwise the error says the manifest still says
    nothing of the end. If only the manifest could not be written the usual way, the trace
    is whole: written in place, it is complete."""
    from rrverify.checkpoints.pages import PageStoreWriter
    from rrverify.errors import TraceError
    from rrverify.trace import TraceWriter
    if os.geteuid() != 0:
        pytest.skip("needs root (to mount a small tmpfs)")
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, 256):
        pytest.skip("cannot mount a tmpfs here")
    try:
        # As a real host's CPUID leaves do, indent=1 makes the first manifest larger than
        # the final one written compactly.
        leaves = 0 if first_manifest == "small" else 300
        host = {"cpuid": {f"{i:#x}.0": [0, 1, 2, 3] for i in range(leaves)}}
        w = TraceWriter(str(mnt / "t"), {"command": ["x"], "exe": "/x", "env": [], "cwd": "/",
                                         "host": host})
        pages = PageStoreWriter(w.path, w.put_blob)
        if first_manifest == "only-it-fails":
            size = (mnt / "t" / "manifest.json").stat().st_size
            _fill(mnt)
            pages.close()
            w.close(complete=True, end={"reason": "exited with status 0"}, stats={})
            assert (mnt / "t" / "manifest.json").stat().st_size == size      # in place
            m = json.loads((mnt / "t" / "manifest.json").read_text())
            assert m["complete"] is True and m["end"]["reason"] == "exited with status 0"
            assert Trace(str(mnt / "t")).complete
            return
        w.add_process({"pid": 1, "parent": None, "parent_event": None})
        w.add_events(0, b"\0" * 264, 1)
        _fill(mnt)
        pages.add(b"\1" * 16, b"\1" * 4096)
        pages.close()                   # as the recorder does: the page store first
        with pytest.raises(TraceError) as e:
            w.close(complete=True, end={"reason": "exited with status 0"}, stats={})
        m = json.loads((mnt / "t" / "manifest.json").read_text())
        if first_manifest == "large":
            assert str(e.value) == "record: cannot write the trace: no space left on device"
            assert m["complete"] is False and "integrity" in m
            assert m["end"]["reason"] == "cannot write the trace: no space left on device"
            assert Trace(str(mnt / "t")).event_count == 0
        else:
            assert "the manifest could not be updated either" in str(e.value)
            assert "end" not in m and m["complete"] is False
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_ship_reads_as_the_reader_does(trace):
    """--ship packs a segment's files through the same checks: damage stays its segments'."""
    from rrverify.checkpoints.pages import PageStoreReader
    from rrverify.cluster.ship import segment_bundle, shared_bundle
    from rrverify.errors import TraceError
    from rrverify.replayer.segment import segment_bounds
    (trace / "checkpoints" / "000003.json").unlink()
    os.mkfifo(trace / "checkpoints" / "000003.json")
    t = Trace(str(trace))
    shared = shared_bundle(t)
    assert "checkpoints/000000.json" in shared and "checkpoints/000003.json" not in shared
    pages = PageStoreReader(t)
    bounds = segment_bounds(t)
    assert segment_bundle(t, pages, *bounds[0])["frames"]
    for k in (2, 3):          # segment 2 compares with checkpoint 3, segment 3 restores it
        with pytest.raises(TraceError, match="000003.json: not a regular file"):
            segment_bundle(t, pages, *bounds[k])


def _within(seconds, fn, *args):
    """fn(*args) on a thread: its result or its exception, or a failure if it still runs
    after `seconds` (a wait that never ends must fail the test, not hang it)."""
    import threading
    out = {}

    def run():
        try:
            out["result"] = fn(*args)
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{fn.__name__} still waits after {seconds} s"
    if "error" in out:
        raise out["error"]
    return out.get("result")


def _blobs_wait_for(monkeypatch):
    """Every blob the trace writer stores waits (up to 10 s) for the Event returned to be set."""
    import threading
    from rrverify.trace import TraceWriter
    gate = threading.Event()
    real_put = TraceWriter.put_blob

    def slow_put(self, data, digest=None):
        gate.wait(10)
        return real_put(self, data, digest)

    monkeypatch.setattr(TraceWriter, "put_blob", slow_put)
    return gate


def _writer(path):
    from rrverify.trace import TraceWriter
    from rrverify.checkpoints.pages import PageStoreWriter
    w = TraceWriter(str(path), {"command": ["x"], "exe": "/x", "env": [], "cwd": "/"})
    PageStoreWriter(w.path, w.put_blob).close()     # no pages: the recorder's empty store
    w.add_process({"pid": 1, "parent": None, "parent_event": None})
    return w


def _file_identity(data: bytes) -> dict:
    from rrverify.exec_image import content_digest
    d = content_digest(data)
    return {"path": "/x", "size": len(data), "mtime_ns": 0, "sha256": d, "blob": d}


def test_a_mapped_file_is_on_disk_before_the_frames_queued_after_it(tmp_path, monkeypatch):
    """A file's blob and files.jsonl line are written by the frame writer's thread (the tracer
    does not wait for the compression), yet a recorder killed at any moment leaves no frame
    naming a file that is not stored, and a checkpoint that may name it waits for it."""
    import threading
    import time
    from rrverify.trace import INDEX_MAGIC, blob_path
    gate = _blobs_wait_for(monkeypatch)
    w = _writer(tmp_path / "t")
    ident = _file_identity(b"file content")
    assert w.add_file(ident, b"file content") == 0
    w.add_events(0, b"\0" * 264, 1)
    w.cut_frame()
    waiter = threading.Thread(target=w.wait_for_files, args=(1,))
    waiter.start()
    time.sleep(0.3)
    assert (tmp_path / "t" / "events.idx").read_bytes() == INDEX_MAGIC    # the frame waits
    assert (tmp_path / "t" / "files.jsonl").read_bytes() == b""
    assert waiter.is_alive()                                              # so does a checkpoint
    gate.set()
    waiter.join(10)
    assert not waiter.is_alive()
    assert json.loads((tmp_path / "t" / "files.jsonl").read_text())["index"] == 0
    assert os.path.exists(blob_path(w.path, bytes.fromhex(ident["blob"])))
    w.close(complete=True, end={"reason": "exited with status 0"}, stats={})
    assert w.frames_written == 1


def test_a_mapped_file_that_cannot_be_written_keeps_later_frames_and_checkpoints_out(
        tmp_path, monkeypatch):
    """A full disk while a mapped file is stored: no frame after it is written, a checkpoint
    waiting for it fails, and the trace ends incomplete saying why."""
    import errno
    from rrverify import trace as trace_module
    from rrverify.errors import TraceError

    def full(paths, datas):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), paths[0])

    monkeypatch.setenv("RRVERIFY_CACHE_DIR", str(tmp_path / "cache"))   # nothing to copy
    w = _writer(tmp_path / "t")
    w.add_events(0, b"\0" * 264, 1)
    w.cut_frame()                       # written: before the file
    monkeypatch.setattr(trace_module, "_write_files", full)     # how blobs are written
    w.add_file(_file_identity(b"file content"), b"file content")
    w.add_events(0, b"\0" * 264, 1)
    with pytest.raises(TraceError, match="no space left on device"):
        _within(10, w.wait_for_files, 1)
    with pytest.raises(TraceError, match="no space left on device"):
        w.cut_frame()
    monkeypatch.undo()
    with pytest.raises(TraceError):
        w.close(complete=True, end={"reason": "exited with status 0"}, stats={})
    assert w.frames_written == 1                                  # the one before the file
    assert (tmp_path / "t" / "files.jsonl").read_bytes() == b""
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert m["complete"] is False and "no space left" in m["end"]["reason"]


def test_a_frame_writer_that_fails_otherwise_than_on_a_write_ends_the_trace_incomplete(
        tmp_path, monkeypatch):
    """Anything that stops the frame writer's thread (here a MemoryError while it indexes a
    frame) fails what waits for it and ends the trace incomplete, saying why: never a hang,
    never a complete trace missing its tail."""
    from rrverify import trace as trace_module
    from rrverify.errors import TraceError

    def exhausted(comp):
        raise MemoryError("out of memory")

    w = _writer(tmp_path / "t")
    monkeypatch.setattr(trace_module, "frame_hash", exhausted)
    w.add_events(0, b"\0" * 264, 1)
    w.cut_frame()
    with pytest.raises(TraceError, match="MemoryError"):
        _within(10, w.wait_for_files, 1)
    with pytest.raises(TraceError, match="cannot write the trace: MemoryError: out of memory"):
        w.close(complete=True, end={"reason": "exited with status 0"}, stats={})
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert m["complete"] is False and "MemoryError" in m["end"]["reason"]
    assert m["stats"]["frames"] == 0


def test_mapped_file_contents_waiting_for_the_writer_are_bounded(tmp_path, monkeypatch):
    """Contents queued for the frame writer are bounded (MAX_QUEUED_FILE_BYTES): a file that
    would pass the bound waits until the ones before it are written."""
    import threading
    from rrverify import trace as trace_module
    monkeypatch.setattr(trace_module, "MAX_QUEUED_FILE_BYTES", 100)
    gate = _blobs_wait_for(monkeypatch)
    w = _writer(tmp_path / "t")
    first, second = b"a" * 80, b"b" * 80
    assert w.add_file(_file_identity(first), first) == 0
    blocked = threading.Thread(target=w.add_file, args=(_file_identity(second), second))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive() and w.files == 1      # 160 bytes would pass the bound
    gate.set()
    blocked.join(10)
    assert not blocked.is_alive() and w.files == 2
    _within(10, w.wait_for_files, 2)
    w.close(complete=True, end={"reason": "exited with status 0"}, stats={})
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert m["complete"] is True and m["stats"]["mapped_files"] == 2
