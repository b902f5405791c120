"""A missing, truncated or corrupted trace gets one line naming the problem and exit 2."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import zstandard

from conftest import assert_one_line_error, record, replay, run_cli
from traceedit import rehash


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


def test_interrupted_trace_starts_no_segment_past_its_end(longrun, tmp_path):
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
    # Still indexed (ids stay positions), but no segment starts from those past the end.
    assert any(c["event"] >= t.event_count for c in t.checkpoints)
    assert t.segments and all(c["event"] < t.event_count for c in t.segments)
    proc = replay(copy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert b"incomplete trace" in proc.stdout


# -- bad command lines and environments: one line, exit 2, before anything runs ----------------

@pytest.mark.parametrize("option,value", [
    ("--checkpoint-every", "-1"), ("--checkpoint-every", str(2**64)),
    ("--checkpoint-every", "1e3"), ("--checkpoint-interval", "-1"),
    ("--checkpoint-interval", "nan"), ("--checkpoint-interval", "inf"),
    ("--checkpoint-interval", "1e300"),
])
def test_record_refuses_checkpoint_options_out_of_range(option, value, programs, tmp_path):
    out = tmp_path / "t"
    proc = run_cli("record", "-o", out, f"{option}={value}", "--", programs["hello"])
    assert_one_line_error(proc, 2, option)
    assert not out.exists()


@pytest.mark.parametrize("args,option", [
    (("verify", "--workers", "0"), "--workers"), (("verify", "--workers", "-2"), "--workers"),
    (("verify", "--retries", "-1"), "--retries"),
    (("verify", "--segment-timeout", "nan"), "--segment-timeout"),
    (("verify", "--segment-timeout", "0"), "--segment-timeout"),
    (("replay", "--segment", "-1"), "--segment"),
])
def test_verify_and_replay_refuse_options_out_of_range(args, option, good_trace):
    assert_one_line_error(run_cli(*args[:1], good_trace, *args[1:]), 2, option, "out of range")


def test_unwritable_output_directory(programs, tmp_path):
    (tmp_path / "file").write_text("")
    assert_one_line_error(run_cli("record", "-o", tmp_path / "file" / "t", "--", programs["hello"]),
                          2, "cannot write a trace at", "Not a directory")


@pytest.mark.parametrize("command,option", [("verify", "--json"), ("verify", "--junit"),
                                            ("replay", "--json")])
def test_unwritable_report_is_refused_before_the_run(command, option, good_trace, tmp_path):
    import time
    t0 = time.monotonic()
    proc = run_cli(command, good_trace, option, tmp_path / "no-such-dir" / "r")
    assert_one_line_error(proc, 2, option, "No such file or directory")
    assert proc.stdout == b"" and time.monotonic() - t0 < 3     # Ray never started
    assert_one_line_error(run_cli(command, good_trace, option, tmp_path), 2, "Is a directory")


@pytest.mark.parametrize("command", ["info", "dump", "replay", "verify"])
def test_closed_stdout(command, good_trace):
    import subprocess
    import sys
    proc = subprocess.run(f"{sys.executable} -m rrverify {command} {good_trace} >&-",
                          shell=True, capture_output=True, timeout=120)
    assert_one_line_error(proc, 2, "stdout is closed")


@pytest.mark.parametrize("command", ["info", "dump"])
def test_full_stdout(command, good_trace):
    import subprocess
    import sys
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "rrverify", command, str(good_trace)],
                              stdout=full, stderr=subprocess.PIPE, timeout=120)
    assert_one_line_error(proc, 2, "cannot write to stdout", "No space left on device")


def test_dangling_latest_trace_link(tmp_path):
    (tmp_path / "latest-trace").symlink_to(tmp_path / "gone-0")
    proc = run_cli("replay", env={"RRVERIFY_TRACE_DIR": str(tmp_path)})
    assert_one_line_error(proc, 2, "latest-trace points to", "gone-0", "no longer exists")


def test_a_failed_start_leaves_latest_trace_alone(programs, tmp_path):
    env = {"RRVERIFY_TRACE_DIR": str(tmp_path)}
    assert run_cli("record", "--", programs["hello"], env=env).returncode == 0
    assert_one_line_error(run_cli("record", "--", "/nonexistent", env=env), 2, "/nonexistent")
    assert os.path.realpath(tmp_path / "latest-trace") == str(tmp_path / "hello-0")
    assert sorted(os.listdir(tmp_path)) == ["hello-0", "latest-trace"]


def nofile_below_recorded(trace):
    """(the trace's recorded hard RLIMIT_NOFILE, a lower one, a preexec_fn that sets it)."""
    import resource
    recorded = dict((n, h) for n, _, h in manifest(trace)["rlimits"])["RLIMIT_NOFILE"]
    lower = 4096 if recorded < 0 or recorded > 4096 else recorded // 2
    return recorded, lower, lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                       (min(lower, 1024), lower))


def test_replay_refuses_lower_hard_rlimits(good_trace):
    """Restore would set the recorded limits in the tracee: a lower hard limit here cannot be
    raised (EPERM) without privilege, or changes what the program sees."""
    import subprocess
    import sys
    recorded, lower, limit = nofile_below_recorded(good_trace)
    proc = subprocess.run([sys.executable, "-m", "rrverify", "replay", str(good_trace)],
                          capture_output=True, timeout=120, preexec_fn=limit)
    assert_one_line_error(proc, 2, f"RLIMIT_NOFILE: recorded hard limit {recorded}, "
                                   f"this process allows {lower}")


@pytest.mark.parametrize("command,option", [("replay", "--json"), ("verify", "--junit")])
def test_a_report_that_cannot_be_written_after_the_run(command, option, good_trace):
    proc = run_cli(command, good_trace, option, "/dev/full")
    assert_one_line_error(proc, 2, f"{option} /dev/full: cannot write it: No space left")
    assert b"verified" not in proc.stdout
