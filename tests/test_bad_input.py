"""A missing, truncated or corrupted trace gets one line naming the problem and exit 2."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import zstandard

from conftest import assert_one_line_error, record, replay, run_cli
from traceedit import rehash


@pytest.fixture(scope="module")
def good_trace(programs, tmp_path_factory):
    trace = tmp_path_factory.mktemp("good") / "t"
    assert record(trace, programs["fileio"], str(trace.parent)).returncode == 0
    return trace


@pytest.fixture
def trace(good_trace, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(good_trace, copy)
    return copy


def manifest(trace) -> dict:
    return json.loads((trace / "manifest.json").read_text())


def set_manifest(trace, m) -> None:
    (trace / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize("command", ["replay", "info", "dump"])
def test_missing_trace(command, tmp_path):
    assert_one_line_error(run_cli(command, tmp_path / "nope"), 2, "no such trace directory")


@pytest.mark.parametrize("command", ["replay", "info", "dump"])
def test_not_a_trace(command, tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    assert_one_line_error(run_cli(command, tmp_path), 2, "not an rrverify trace")


def test_corrupted_manifest(trace):
    (trace / "manifest.json").write_bytes(b"{\"format\": \"rrverify-tr\x00\xff")
    assert_one_line_error(replay(trace), 2, "corrupted manifest")


def test_manifest_missing_a_field(trace):
    m = manifest(trace)
    del m["exe"]
    set_manifest(trace, m)
    assert_one_line_error(replay(trace), 2, "corrupted manifest", "'exe'")


def test_newer_format_version(trace):
    m = manifest(trace)
    m["version"] = 99
    set_manifest(trace, m)
    assert_one_line_error(run_cli("info", trace), 2, "format version 99 is newer")


def test_truncated_events(trace):
    p = trace / "events.zst"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    assert_one_line_error(replay(trace), 2, "truncated")


def test_truncated_index(trace):
    p = trace / "events.idx"
    p.write_bytes(p.read_bytes()[:-5])
    assert_one_line_error(replay(trace), 2, "truncated frame index")


def test_missing_events_file(trace):
    os.unlink(trace / "events.zst")
    assert_one_line_error(replay(trace), 2, "truncated trace")


def test_corrupted_frame(trace):
    p = trace / "events.zst"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x55
    p.write_bytes(bytes(data))
    assert_one_line_error(replay(trace), 2, "events frame 0 is corrupted")
    assert_one_line_error(run_cli("dump", trace), 2, "events frame 0 is corrupted")


def _stored_blob(trace):
    files = [json.loads(l) for l in (trace / "files.jsonl").read_text().splitlines()]
    digest = next(f["blob"] for f in files if "blob" in f)
    return digest, trace / "blobs" / digest[:2] / f"{digest}.zst"


def test_blob_hash_mismatch(trace):
    digest, path = _stored_blob(trace)
    path.write_bytes(zstandard.ZstdCompressor().compress(b"not the program"))
    assert_one_line_error(replay(trace), 2, f"blob {digest}", "corrupted")


def test_blob_undecodable(trace):
    digest, path = _stored_blob(trace)
    path.write_bytes(b"garbage")
    assert_one_line_error(replay(trace), 2, f"blob {digest} is corrupted")


def test_blob_missing(trace):
    digest, path = _stored_blob(trace)
    os.unlink(path)
    assert_one_line_error(replay(trace), 2, f"blob {digest} is missing")


def test_events_after_exit(trace):
    """A complete trace whose manifest disagrees with its index is refused."""
    m = manifest(trace)
    m["stats"]["events"] += 1
    set_manifest(trace, m)
    assert_one_line_error(replay(trace), 2, "truncated trace")


def test_malformed_event_is_a_trace_error_not_a_divergence(trace):
    """A memory write of an unknown kind inside a valid frame: exit 2, naming the event."""
    import zstandard as z
    from rrverify import events as E
    from rrverify.trace import INDEX_MAGIC, INDEX_RECORD, Trace, frame_hash
    t = Trace(str(trace))
    frame = t.frames[0]
    raw = bytearray(t.read_frame(frame))
    pos, target = 0, None
    for ev in E.iter_events(bytes(raw), frame.first_event):
        if ev.kind == E.SYSCALL and ev.writes and ev.index > 5:
            target = ev
            break
        pos += ev.size
    assert target is not None
    how_at = pos + E.HEADER.size + 12          # struct rrv_write: addr, len, how
    raw[how_at:how_at + 4] = (7).to_bytes(4, "little")
    comp = z.ZstdCompressor(write_checksum=True, write_content_size=True).compress(bytes(raw))
    rest = (trace / "events.zst").read_bytes()[frame.compressed:]
    (trace / "events.zst").write_bytes(comp + rest)
    idx = bytearray((trace / "events.idx").read_bytes())
    recs = [INDEX_RECORD.unpack_from(idx, 8 + i * INDEX_RECORD.size) for i in range(len(t.frames))]
    shift = len(comp) - frame.compressed
    out = bytearray(INDEX_MAGIC)
    for i, (o, c, r, first, count, res, h) in enumerate(recs):
        if i == 0:
            out += INDEX_RECORD.pack(0, len(comp), r, first, count, res, frame_hash(comp))
        else:
            out += INDEX_RECORD.pack(o + shift, c, r, first, count, res, h)
    (trace / "events.idx").write_bytes(bytes(out))
    rehash(trace)
    assert_one_line_error(replay(trace), 2, f"event {target.index}", "unknown memory-write kind 7")


def test_replay_refuses_an_incompatible_cpu(trace):
    m = manifest(trace)
    m["host"]["cpuid"]["0x1.0"][2] ^= 1 << 0        # SSE3 "differed"
    set_manifest(trace, m)
    assert_one_line_error(replay(trace), 2, "CPUID 0x1.0 ecx")


def test_interrupted_trace_drops_checkpoints_past_its_end(longrun, tmp_path):
    """A recorder killed after indexing a checkpoint whose events never reached the disk."""
    copy = tmp_path / "t"
    shutil.copytree(longrun, copy)
    m = manifest(copy)
    m["complete"] = False
    for key in ("stats", "end", "integrity"):     # as the first manifest: a killed recorder
        m.pop(key)
    set_manifest(copy, m)
    idx = (copy / "events.idx").read_bytes()
    (copy / "events.idx").write_bytes(idx[:8 + 48 * 2])       # only the first two frames
    from rrverify.trace import Trace
    t = Trace(str(copy))
    assert t.checkpoints and all(c["event"] < t.event_count for c in t.checkpoints)
    proc = replay(copy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert b"incomplete trace" in proc.stdout
