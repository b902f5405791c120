"""Cross-process checks (docs/checks.md §13.2) fire on a trace whose streams disagree with each
other even where each process replays faithfully on its own."""
from __future__ import annotations

import json
import shutil
import struct

import pytest

from conftest import record, run_cli
from rrverify import events as E
from rrverify.recorder.syscalls import NUMBERS
from rrverify.trace import Trace
from traceedit import rewrite_events


@pytest.fixture(scope="module")
def forgetful(programs, tmp_path_factory):
    trace = tmp_path_factory.mktemp("wait_forget") / "t"
    assert record(trace, programs["wait_forget"]).returncode == 0
    return trace


def verify_json(trace, tmp_path) -> tuple[int, dict]:
    out = tmp_path / "r.json"
    proc = run_cli(trace, "--workers", "2", "--json", out)
    return proc.returncode, json.loads(out.read_text())


def edited(forgetful, tmp_path, edit):
    trace = tmp_path / "t"
    shutil.copytree(forgetful, trace)
    rewrite_events(trace, edit)
    return trace


def test_untouched_trace_passes_every_cross_check(forgetful, tmp_path):
    rc, report = verify_json(forgetful, tmp_path)
    assert rc == 0 and report["status"] == "verified"
    assert report["totals"]["processes"] == 2
    assert report["totals"]["cross_process_checks"] == 2     # the fork's pid, the wait's status
    assert report["cross_process"] == []
    pids = {p["index"]: p["pid"] for p in Trace(str(forgetful)).processes}
    assert {(s["process"], s["pid"]) for s in report["segments"]} == set(pids.items())


def test_edited_wait_status_is_a_cross_process_divergence(forgetful, tmp_path):
    def edit(ev):
        if ev.process == 0 and ev.kind == E.SYSCALL and ev.nr == NUMBERS["wait4"]:
            for w in ev.writes:
                if w.addr == ev.regs["rsi"]:
                    assert struct.unpack("<i", w.data[:4])[0] == 7 << 8
                    w.data = struct.pack("<i", 9 << 8)
        return ev
    trace = edited(forgetful, tmp_path, edit)
    rc, report = verify_json(trace, tmp_path)
    assert rc == 1 and report["status"] == "failed"
    assert report["totals"]["verified"] == report["totals"]["segments"]   # each on its own: fine
    [div] = report["cross_process"]
    assert div["check"] == "wait-status"
    assert "got exited 9, but that child's recorded end is exited 7" in div["detail"]
    assert [p["process"] for p in div["processes"]] == [0, 1]
    rep = run_cli("replay", trace, "--json", tmp_path / "replay.json")
    assert rep.returncode == 1 and "cross-process divergence (wait-status)" in rep.stdout.decode()
    replayed = json.loads((tmp_path / "replay.json").read_text())
    assert replayed["status"] == "diverged" and replayed["cross_process_checks"] == 2
    assert [d["check"] for d in replayed["cross_process"]] == ["wait-status"]
    junit = tmp_path / "r.xml"
    assert run_cli(trace, "--workers", "1", "--junit", junit).returncode == 1
    import xml.etree.ElementTree as ET
    suite = ET.parse(junit).getroot()
    segments = report["totals"]["segments"]
    assert (suite.get("tests"), suite.get("failures")) == (str(segments + 1), "1")
    assert [c.get("classname") for c in suite.iter("testcase")].count(
        "rrverify.cross-process") == 1


def test_edited_fork_result_is_a_cross_process_divergence(forgetful, tmp_path):
    def edit(ev):
        if ev.process == 0 and ev.kind == E.SYSCALL and ev.nr in (NUMBERS["clone"],
                                                                    NUMBERS["fork"]):
            ev.result = 4242
        return ev
    trace = edited(forgetful, tmp_path, edit)
    rc, report = verify_json(trace, tmp_path)
    assert rc == 1
    checks = [d["check"] for d in report["cross_process"]]
    assert "fork-pid" in checks
    div = report["cross_process"][checks.index("fork-pid")]
    assert "returned 4242, but the child recorded there is" in div["detail"]


def test_edited_pipe_data_is_a_cross_process_divergence(programs, tmp_path):
    """The reader's recorded bytes (and the hash the trace holds for them, so its own replay
    is consistent with the edit: it forgets what it read) are no longer what the writer
    wrote: every segment verifies, and only the cross-process check can tell."""
    from rrverify.replayer.crossprocess import poly_concat
    trace = tmp_path / "t"
    assert record(trace, "/bin/sh", "-c",
                  f"printf hello | {programs['pipe_sink']}").returncode == 0
    rc, report = verify_json(trace, tmp_path)
    assert rc == 0 and report["totals"]["cross_process_checks"] >= 5   # 2 forks, 2 waits, 1 pipe
    edits = []

    def change(read):
        [w] = read.writes
        assert w.data == b"hello"
        w.data = b"jello"
        pipe, _, direction = read.pipe
        read.pipe = (pipe, poly_concat([(c, 1) for c in b"jello"]), direction)
        edits.append(read)
    edit_pipe_reads(trace, change)
    assert len(edits) == 1
    rc, report = verify_json(trace, tmp_path)
    assert rc == 1
    assert report["totals"]["verified"] == report["totals"]["segments"]
    [div] = [d for d in report["cross_process"] if d["check"] == "pipe-data"]
    assert "the 5 bytes process" in div["detail"] and "read from pipe" in div["detail"]
    reader = edits[0].process
    assert div["processes"][1]["process"] == reader
    assert div["processes"][0]["process"] not in (0, reader)      # the writer: printf's shell


def edit_pipe_reads(trace, change) -> None:
    """change(read) for each 5-byte read of a pipe: a traced one's event, or a buffered one's
    record (E.BufferedSyscall, .pipe a tuple), whichever the recording made; read.process says
    whose."""
    def edit(ev):
        if ev.kind == E.SYSCALL and ev.flags & E.EF_PIPE and ev.nr == NUMBERS["read"] \
                and ev.result == 5:
            pipe, h, direction, reserved = struct.unpack("<QQII", ev.extra)
            ev.pipe = (pipe, h, direction)
            change(ev)
            ev.extra = struct.pack("<QQII", *ev.pipe, reserved)
        elif ev.kind == E.FLUSH:
            recs = E.buffered_syscalls(ev)
            for rec in recs:
                if rec.pipe and rec.nr == NUMBERS["read"] and rec.result == 5:
                    rec.process = ev.process
                    change(rec)
            ev.extra = E.encode_buffered_syscalls(recs)
        return ev
    rewrite_events(trace, edit)


def test_a_pipe_data_edit_alone_is_caught_by_replay(tmp_path):
    """Without the matching hash, the reader's own replay sees its injected bytes differ from
    the hash the trace holds for them."""
    trace = tmp_path / "t"
    assert record(trace, "/bin/sh", "-c", "printf hello | wc -c").returncode == 0

    def change(read):
        read.writes[0].data = b"jello"
    edit_pipe_reads(trace, change)
    rc, report = verify_json(trace, tmp_path)
    assert rc == 1
    [bad] = [s for s in report["segments"] if s["status"] != "verified"]
    assert bad["status"] == "diverged"
    assert "read through a pipe differ from the hash" in bad["divergence"]["detail"]


def test_a_waitid_status_is_checked_against_the_child_s_exit(programs, tmp_path):
    """waitid reports the end in a siginfo: the wait-status check reads it there; an edited
    si_status is a divergence naming both processes."""
    trace = tmp_path / "t"
    rec = record(trace, programs["waitid_child"])
    assert rec.returncode == 0 and rec.stdout == b"code exited, status 3\n"
    rc, report = verify_json(trace, tmp_path)
    assert rc == 0 and report["totals"]["cross_process_checks"] == 2   # the fork, the waitid

    def edit(ev):
        if ev.process == 0 and ev.kind == E.SYSCALL and ev.nr == NUMBERS["waitid"]:
            for w in ev.writes:
                if w.addr == ev.regs["rdx"]:
                    fields = list(struct.unpack_from("<7i", w.data))
                    assert fields[6] == 3
                    fields[6] = 4
                    w.data = struct.pack("<7i", *fields) + w.data[28:]
        return ev
    rewrite_events(trace, edit)
    rc, report = verify_json(trace, tmp_path)
    assert rc == 1
    [div] = [d for d in report["cross_process"] if d["check"] == "wait-status"]
    assert "got exited 4, but that child's recorded end is exited 3" in div["detail"]
