"""The trace format is a contract: every event decodes and re-encodes byte for byte, and the
syscall table agrees with python-ptrace's and libc's numbering."""
from __future__ import annotations

from ptrace.syscall.linux.x86_64 import SYSCALL_NAMES

from rrverify import events as E
from rrverify.recorder import gen_syscalls, syscalls
from rrverify.trace import Trace
from conftest import record, run_cli


def test_recode_every_event(programs, tmp_path):
    kinds = set()
    for name in ("fileio", "segv_handler", "rdtsc", "mmap_file"):
        trace = tmp_path / name
        assert record(trace, programs[name], str(tmp_path)).returncode == 0
        for frame, raw in Trace(str(trace)).iter_frames():
            evs = list(E.iter_events(raw, frame.first_event))
            kinds |= {e.kind for e in evs}
            assert b"".join(E.reencode(e) for e in evs) == raw
    assert kinds == {E.SYSCALL, E.RDTSC, E.SIGNAL, E.EXEC, E.EXIT, E.FLUSH, E.PATCH}


def test_large_outputs_go_to_the_blob_store(tmp_path):
    data = tmp_path / "big"
    data.write_bytes(bytes(range(256)) * 4096)          # 1 MiB: read in large chunks
    trace = tmp_path / "t"   # traced reads: buffered ones are in their flush (test_syscallbuf.py)
    assert run_cli("record", "--no-syscallbuf", "-o", trace, "--", "/bin/cat", data).returncode == 0
    t = Trace(str(trace))
    blob_writes = [w for ev in t.events() for w in ev.writes if w.blob is not None]
    assert blob_writes
    assert t.blob(blob_writes[0].blob)[:256] == bytes(range(256))


def test_syscall_numbers_agree_with_python_ptrace():
    for nr, sc in syscalls.TABLE.items():
        if nr in SYSCALL_NAMES and SYSCALL_NAMES[nr] not in ("timerfd",):
            assert SYSCALL_NAMES[nr] == sc.name


def test_generated_table_covers_every_entry():
    text = gen_syscalls.generate()
    for nr, sc in syscalls.TABLE.items():
        assert f'[{nr}] = {{"{sc.name}", RRV_H_{sc.handling},' in text
        assert f"_Static_assert(SYS_{sc.name} == {nr}" in text


def test_every_table_is_hashed_from_the_manifest(recorded_hello):
    """The final manifest holds each table's size and SHA-256 (format 4 on: BLAKE2b-256 before),
    and each line of checkpoints.jsonl its checkpoint file's (computed here independently of
    the reader)."""
    import hashlib
    import json

    def sha256(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()
    m = json.loads((recorded_hello / "manifest.json").read_text())
    assert m["version"] == 4 and m["complete"] is True
    assert sorted(m["integrity"]) == sorted(["events.idx", "pages.idx", "files.jsonl",
                                             "checkpoints.jsonl", "processes.jsonl"])
    for name, rec in m["integrity"].items():
        data = (recorded_hello / name).read_bytes()
        assert rec == {"size": len(data), "sha256": sha256(data)}, name
    rows = [json.loads(line) for line in
            (recorded_hello / "checkpoints.jsonl").read_text().splitlines()]
    assert rows
    for row in rows:
        assert list(row) == ["id", "process", "event", "sha256"]
        data = (recorded_hello / "checkpoints" / f"{row['id']:06d}.json").read_bytes()
        assert row["sha256"] == sha256(data)


def test_page_names_are_sha256_16_in_python_and_in_the_native_core():
    """trace-format.md's page digest: SHA-256/16 of the 4096 bytes, ZERO for a zero page. The
    native core names runs of pages (the recorder) and Python names single pages (readers);
    both must give the definition's bytes, computed here with hashlib."""
    import hashlib
    import os

    from rrverify.checkpoints.pages import ZERO, page_digest, page_digests
    pages = [os.urandom(4096), bytes(4096), b"\0" * 4095 + b"\1", os.urandom(4096)]
    want = [ZERO if p == bytes(4096) else hashlib.sha256(p).digest()[:16] for p in pages]
    data = b"".join(pages)
    assert page_digests(data) == want
    assert page_digests(data, [3, 1, 0]) == [want[3], want[1], want[0]]
    assert [page_digest(p) for p in pages] == want
    assert page_digests(data, []) == []
    import pytest
    for outside in ([4], [-1], [0, 2**32 - 1]):       # never a read past the data
        with pytest.raises(ValueError):
            page_digests(data, outside)
