"""Hostile traces against the multi-process parts of format 3 (docs/trace-format.md §1.1, §3,
§5.1, §5.3, §9; docs/checks.md §13): PIPE extras, AT_SYSCALL_ENTRY and ASYNC_FATAL signals,
fork events, processes.jsonl, per-process frames and checkpoints. Each must end in one clear
line and exit 2 (or a `trace-error` segment), a divergence, or a cross-process divergence:
never a traceback, an "internal error", a write outside the replayed process, or "verified"
for a trace that lies."""
from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import struct

import pytest
import zstandard

from conftest import assert_one_line_error, record, run_cli
from rrverify import events as E
from rrverify.recorder.syscalls import NUMBERS
from rrverify.trace import INDEX_MAGIC, INDEX_RECORD, Trace, frame_hash
from traceedit import _replace, rehash, rewrite_events

FORKS = {NUMBERS[n] for n in ("fork", "vfork", "clone", "clone3")}


# ---------------------------------------------------------------------------------- helpers

def _recorded(programs, tmp_path_factory, name, *options):
    trace = tmp_path_factory.mktemp(name) / "t"
    proc = run_cli("record", *options, "-o", trace, "--", programs[name])
    assert proc.returncode == 0, proc.stderr.decode()
    return trace


@pytest.fixture(scope="module")
def forked(programs, tmp_path_factory):
    return _recorded(programs, tmp_path_factory, "fork_child")


@pytest.fixture(scope="module")
def vforked(programs, tmp_path_factory):
    return _recorded(programs, tmp_path_factory, "vfork_write")


@pytest.fixture(scope="module")
def signalled(programs, tmp_path_factory):
    # traced: its blocked read interrupted at its exit is the shape these attacks edit (a
    # buffered one's signal comes at its stub's entry: tests/test_syscallbuf.py)
    return _recorded(programs, tmp_path_factory, "signal_parent", "--no-syscallbuf")


@pytest.fixture(scope="module")
def killed(programs, tmp_path_factory):
    return _recorded(programs, tmp_path_factory, "kill_spinning")


def fresh(base, tmp_path):
    trace = tmp_path / "t"
    shutil.copytree(base, trace)
    return trace


def find(trace, pred, n=0) -> E.Event:
    """The n-th event (any process) for which pred holds; ev.process says whose."""
    seen = 0
    t = Trace(str(trace))
    for frame, raw in t.iter_frames():
        for ev in E.iter_events(raw, frame.first_event):
            ev.process = frame.process
            if pred(ev):
                if seen == n:
                    return ev
                seen += 1
    raise LookupError("no such event")


def edit_at(trace, target: E.Event, change) -> None:
    """change(ev) on the event of target's process and index; every other event kept."""
    def edit(ev):
        if ev.process == target.process and ev.index == target.index:
            out = change(ev)
            return ev if out is None else out
        return ev
    rewrite_events(trace, edit)


def setter(**fields):
    def change(ev):
        for k, v in fields.items():
            setattr(ev, k, v)
    return change


def rewrite_streams(trace, edit) -> None:
    """edit(process, events) -> events, for streams whose length changes: one frame per
    process, the manifest's counts following (a lie the hashes cannot catch)."""
    t = Trace(str(trace))
    streams: dict[int, list] = {}
    for frame, raw in t.iter_frames():
        for ev in E.iter_events(raw, frame.first_event):
            ev.process = frame.process
            streams.setdefault(frame.process, []).append(ev)
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=True)
    offset, zst, idx, total = 0, [], [INDEX_MAGIC], 0
    for p in sorted(streams):
        evs = edit(p, streams[p])
        raw = b"".join(E.reencode(ev) for ev in evs)
        comp = cctx.compress(raw)
        zst.append(comp)
        idx.append(INDEX_RECORD.pack(offset, len(comp), len(raw), 0, len(evs), p,
                                     frame_hash(comp)))
        offset += len(comp)
        total += len(evs)
    _replace(os.path.join(trace, "events.zst"), b"".join(zst))
    _replace(os.path.join(trace, "events.idx"), b"".join(idx))
    mpath = os.path.join(trace, "manifest.json")
    with open(mpath) as f:
        m = json.load(f)
    m["stats"].update(events=total, frames=len(streams))
    _replace(mpath, json.dumps(m, indent=1, sort_keys=True).encode())
    rehash(trace)


def edit_lines(trace, name, change) -> None:
    path = os.path.join(trace, name)
    with open(path) as f:
        rows = [json.loads(line) for line in f.read().splitlines() if line.strip()]
    rows = change(rows)
    with open(path, "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    rehash(trace)


def drop_checkpoints_after(trace, process, last_event) -> None:
    """Remove process's checkpoints past last_event (they must be the last lines)."""
    def change(rows):
        while rows and rows[-1]["process"] == process and rows[-1]["event"] > last_event:
            os.remove(os.path.join(trace, "checkpoints", "%06d.json" % rows[-1]["id"]))
            rows.pop()
        assert all(r["process"] != process or r["event"] <= last_event for r in rows)
        return rows
    edit_lines(trace, "checkpoints.jsonl", change)


def clean(proc) -> str:
    out = proc.stdout.decode() + proc.stderr.decode()
    assert "Traceback" not in out and "internal error" not in out, out
    return out


def replay_rc(trace, code, *fragments) -> str:
    proc = run_cli("replay", trace)
    out = clean(proc)
    if code == 2:
        return assert_one_line_error(proc, 2, *fragments)
    assert proc.returncode == code, out
    for frag in fragments:
        assert frag in out, (frag, out)
    return out


def check_ok(trace) -> None:
    """`rrverify check` decodes events (§4.4) but replays nothing: these edits pass it."""
    proc = run_cli("check", trace)
    clean(proc)
    assert proc.returncode == 0 and proc.stdout.startswith(b"ok: "), proc.stderr.decode()


def check_error(trace, *fragments) -> None:
    assert_one_line_error(run_cli("check", trace), 2, *fragments)


def verify_report(trace, tmp_path) -> tuple[int, dict]:
    out = tmp_path / "report.json"
    proc = run_cli(trace, "--workers", 1, "--json", out)
    clean(proc)
    return proc.returncode, json.loads(out.read_text())


def bad_segments(report) -> list[dict]:
    return [s for s in report["segments"] if s["status"] != "verified"]


# ---------------------------------------------------------------------------- PIPE extras

def pipe_read(trace) -> E.Event:
    return find(trace, lambda ev: ev.process == 0 and ev.kind == E.SYSCALL and
                ev.flags & E.EF_PIPE and ev.nr == NUMBERS["read"])


BAD_PIPE_EXTRAS = {
    "short": lambda x: x[:16],
    "empty": lambda x: b"",
    "one-byte-more": lambda x: x + b"x",
    "unknown-direction": lambda x: x[:16] + struct.pack("<II", 5, 0),
    "two-on-a-read": lambda x: x * 2,
    "three": lambda x: x * 3,
}


@pytest.mark.parametrize("how", sorted(BAD_PIPE_EXTRAS))
def test_a_malformed_pipe_record_is_a_trace_error(signalled, tmp_path, how):
    trace = fresh(signalled, tmp_path)
    ev = pipe_read(trace)
    edit_at(trace, ev, lambda e: setattr(e, "extra", BAD_PIPE_EXTRAS[how](e.extra)))
    replay_rc(trace, 2, f"event {ev.index}: bad pipe record")
    check_ok(trace)
    if how == "unknown-direction":
        rc, report = verify_report(trace, tmp_path)
        assert rc == 1 and report["status"] == "failed"
        [bad] = bad_segments(report)
        assert bad["status"] == "trace-error" and bad["process"] == 0, bad
        assert "bad pipe record" in json.dumps(bad)


def test_a_pipe_record_on_a_syscall_that_moves_no_pipe_bytes(signalled, tmp_path):
    trace = fresh(signalled, tmp_path)
    ev = find(trace, lambda e: e.process == 0 and e.kind == E.SYSCALL and
              e.nr == NUMBERS["getpid"])

    def change(e):
        e.flags |= E.EF_PIPE
        e.extra = struct.pack("<QQII", 1, 0, 0, 0)
    edit_at(trace, ev, change)
    replay_rc(trace, 2, f"event {ev.index}: bad pipe record")


def test_a_read_recorded_as_a_pipe_write_is_a_trace_error(signalled, tmp_path):
    trace = fresh(signalled, tmp_path)
    ev = pipe_read(trace)
    edit_at(trace, ev, lambda e: setattr(e, "extra", e.extra[:16] + struct.pack("<II", 1, 0)))
    replay_rc(trace, 2, f"event {ev.index}: bad pipe record")


# ------------------------------------------------------------- AT_SYSCALL_ENTRY signals

def entry_signal(trace) -> E.Event:
    return find(trace, lambda e: e.process == 0 and e.kind == E.SIGNAL and
                e.flags & E.EF_AT_SYSCALL_ENTRY)


def exit_signal(trace) -> E.Event:
    return find(trace, lambda e: e.process == 0 and e.kind == E.SIGNAL and
                e.flags & E.EF_AT_SYSCALL_EXIT and e.nr == signal.SIGUSR1)


def test_an_entry_signal_the_process_does_not_handle_diverges(signalled, tmp_path):
    trace = fresh(signalled, tmp_path)
    edit_at(trace, entry_signal(trace), setter(nr=signal.SIGUSR2))
    replay_rc(trace, 1, "divergence at event",
              "delivered to a handler in the recording, without in replay")
    check_ok(trace)


@pytest.mark.parametrize("signo", [0, signal.SIGKILL, signal.SIGSTOP])
def test_an_entry_signal_that_cannot_be_held_is_a_trace_error(signalled, tmp_path, signo):
    """No signal 0; SIGKILL and SIGSTOP are never held (no handler, no delivery stop)."""
    trace = fresh(signalled, tmp_path)
    ev = entry_signal(trace)
    edit_at(trace, ev, setter(nr=signo))
    replay_rc(trace, 2, f"event {ev.index}", f"signal {signo} cannot be held")
    check_ok(trace)


def test_an_entry_signal_numbered_65_is_a_trace_error(signalled, tmp_path):
    trace = fresh(signalled, tmp_path)
    ev = entry_signal(trace)
    edit_at(trace, ev, setter(nr=65))
    line = replay_rc(trace, 2, f"event {ev.index}")
    assert "Input/output error" not in line
    rc, report = verify_report(trace, tmp_path)
    assert rc == 1 and [s["status"] for s in bad_segments(report)] == ["trace-error"]


def test_a_following_signal_numbered_65_is_a_trace_error(signalled, tmp_path):
    trace = fresh(signalled, tmp_path)
    first = exit_signal(trace)
    seen = {}

    def edit(ev):
        if ev.process == 0 and ev.index == first.index:
            seen["signal"] = copy.deepcopy(ev)
        elif ev.process == 0 and ev.index == first.index + 1:
            ev = seen["signal"]
            ev.index, ev.nr = first.index + 1, 65
        return ev
    rewrite_events(trace, edit)
    replay_rc(trace, 2, f"event {first.index + 1}")


def test_entry_and_exit_flags_swapped_diverge(signalled, tmp_path):
    trace = fresh(signalled, tmp_path)
    edit_at(trace, exit_signal(trace), setter(flags=E.EF_AT_SYSCALL_ENTRY))
    replay_rc(trace, 1, "divergence at event")
    trace2 = tmp_path / "t2"
    shutil.copytree(signalled, trace2)
    edit_at(trace2, entry_signal(trace2), setter(flags=E.EF_AT_SYSCALL_EXIT))
    replay_rc(trace2, 1, "divergence at event")


def test_an_entry_signal_also_flagged_fatal_must_be_followed_by_its_death(signalled, tmp_path):
    trace = fresh(signalled, tmp_path)
    ev = entry_signal(trace)
    edit_at(trace, ev, setter(flags=E.EF_AT_SYSCALL_ENTRY | E.EF_ASYNC_FATAL))
    replay_rc(trace, 2, f"event {ev.index}: a fatal signal delivered in user code must be "
              "followed by the death it caused")


# ------------------------------------------------------------------- ASYNC_FATAL, EXIT

def fatal_signal(trace) -> E.Event:
    return find(trace, lambda e: e.kind == E.SIGNAL and e.flags & E.EF_ASYNC_FATAL)


@pytest.mark.parametrize("signo, status", [
    (signal.SIGTERM, 0),                         # followed by a normal exit
    (signal.SIGTERM, signal.SIGKILL),            # by a death by another signal
    (signal.SIGKILL, signal.SIGTERM),
    (0, signal.SIGTERM),
    (0, 0),
    (65, signal.SIGTERM),
])
def test_a_fatal_signal_not_followed_by_its_death(killed, tmp_path, signo, status):
    trace = fresh(killed, tmp_path)
    sig = fatal_signal(trace)

    def edit(ev):
        if ev.process == sig.process and ev.index == sig.index:
            ev.nr = signo
        elif ev.process == sig.process and ev.index == sig.index + 1:
            assert ev.kind == E.EXIT
            ev.nr = status
        return ev
    rewrite_events(trace, edit)
    replay_rc(trace, 2, f"event {sig.index}: a fatal signal delivered in user code must be "
              "followed by the death it caused")
    check_ok(trace)


def test_a_fatal_signal_followed_by_more_events(killed, tmp_path):
    trace = fresh(killed, tmp_path)
    sig = fatal_signal(trace)
    rewrite_streams(trace, lambda p, evs: evs + [copy.deepcopy(evs[sig.index - 1])]
                    if p == sig.process else evs)
    replay_rc(trace, 2, f"event {sig.index + 1}: the trace goes on after the tracee's exit")


def test_a_fatal_signal_whose_exit_is_missing(killed, tmp_path):
    trace = fresh(killed, tmp_path)
    sig = fatal_signal(trace)
    rewrite_streams(trace, lambda p, evs: evs[:sig.index + 1] if p == sig.process else evs)
    replay_rc(trace, 2, "the trace ends before the tracee exits")


def test_fatal_flag_on_a_signal_in_the_middle_of_a_stream(killed, tmp_path):
    trace = fresh(killed, tmp_path)
    ev = find(trace, lambda e: e.process == 0 and e.kind == E.SIGNAL)
    edit_at(trace, ev, setter(flags=E.EF_ASYNC_FATAL))
    replay_rc(trace, 2, f"event {ev.index}: a fatal signal delivered in user code must be "
              "followed by the death it caused")


@pytest.mark.parametrize("base", ["forked", "killed"])
def test_a_sigkill_exit_in_the_middle_of_a_stream(request, tmp_path, base):
    trace = fresh(request.getfixturevalue(base), tmp_path)
    process = 1 if base == "forked" else 0
    ev = find(trace, lambda e: e.process == process and e.kind == E.SYSCALL)
    edit_at(trace, ev, setter(kind=E.EXIT, nr=signal.SIGKILL, writes=[], extra=b"", flags=0))
    replay_rc(trace, 2, f"event {ev.index}: the trace goes on after the tracee's exit")
    check_ok(trace)


def test_a_normal_exit_in_the_middle_of_a_stream(killed, tmp_path):
    trace = fresh(killed, tmp_path)
    ev = find(trace, lambda e: e.process == 0 and e.kind == E.SYSCALL, n=8)
    edit_at(trace, ev, setter(kind=E.EXIT, nr=0, writes=[], extra=b"", flags=0))
    replay_rc(trace, 1, f"divergence at event {ev.index}", "event-kind")


def cut_with_a_fatal_signal(trace, signo) -> None:
    """Process 0 (nobody waits for it) ends at its held SIGUSR1 instead: an ASYNC_FATAL SIGNAL
    of signo and the EXIT of the death by signo; its checkpoints past there removed."""
    at = entry_signal(trace).index
    drop_checkpoints_after(trace, 0, at)

    def edit(p, evs):
        if p != 0:
            return evs
        sig = copy.deepcopy(evs[at])
        sig.flags, sig.writes, sig.nr = E.EF_ASYNC_FATAL, [], signo
        death = copy.deepcopy(evs[-1])
        assert death.kind == E.EXIT
        death.nr = signo
        return evs[:at] + [sig, death]
    rewrite_streams(trace, edit)


def test_a_fatal_signal_cut_is_replayed_as_an_inexact_death(signalled, tmp_path):
    """The documented limit (docs/checks.md §3): a death by SIGTERM in user code is not at an
    exact point, so a stream may end there."""
    trace = fresh(signalled, tmp_path)
    cut_with_a_fatal_signal(trace, signal.SIGTERM)
    replay_rc(trace, 0, "verified")


@pytest.mark.parametrize("signo", [signal.SIGCHLD, 65, signal.SIGKILL, signal.SIGUSR1])
def test_an_impossible_fatal_signal_is_not_verified(signalled, tmp_path, signo):
    trace = fresh(signalled, tmp_path)
    cut_with_a_fatal_signal(trace, signo)
    proc = run_cli("replay", trace)
    clean(proc)
    assert proc.returncode != 0, proc.stdout.decode()


# ----------------------------------------------------------------------- fork events

def fork_event(trace) -> E.Event:
    return find(trace, lambda e: e.process == 0 and e.kind == E.SYSCALL and e.nr in FORKS)


@pytest.mark.parametrize("result", [0, -1, -4096, 2**62, 2**31 + 1])
def test_a_forged_fork_result_diverges(forked, tmp_path, result):
    trace = fresh(forked, tmp_path)
    edit_at(trace, fork_event(trace), setter(result=result))
    replay_rc(trace, 1, "divergence at event")


@pytest.mark.parametrize("addr", [0, 0xdead00000000, 0xffff800000000000, 0xffffffffff600000,
                                  2**64 - 8])
def test_a_fork_write_outside_the_process_diverges(forked, tmp_path, addr):
    trace = fresh(forked, tmp_path)
    ev = fork_event(trace)
    edit_at(trace, ev, lambda e: e.writes.append(E.Write(addr, 8, data=b"A" * 8)))
    replay_rc(trace, 1, f"divergence at event {ev.index}", f"wrote 8 bytes at {addr:#x}, "
              "which replay does not have mapped")
    if addr == 0xdead00000000:
        rc, report = verify_report(trace, tmp_path)
        assert rc == 1
        [bad] = bad_segments(report)
        assert bad["status"] == "diverged" and bad["process"] == 0, bad


def test_a_vfork_write_of_a_missing_blob(vforked, tmp_path):
    trace = fresh(vforked, tmp_path)
    edit_at(trace, fork_event(trace),
            lambda e: e.writes.append(E.Write(0x555555559000, 1 << 31, blob=b"\x11" * 32)))
    assert_one_line_error(run_cli("replay", trace), 2, "blob 1111", "is missing")
    check_error(trace, "blob 1111", "is missing")


def test_a_vfork_write_outside_the_process_diverges(vforked, tmp_path):
    trace = fresh(vforked, tmp_path)
    edit_at(trace, fork_event(trace),
            lambda e: e.writes.append(E.Write(0x100000000000, 4096, data=b"B" * 4096)))
    replay_rc(trace, 1, "which replay does not have mapped")


# -------------------------------------------------------- processes.jsonl, index, checkpoints

def set_row(i, **fields):
    def change(rows):
        rows[i].update(fields)
        return rows
    return change


def all_refuse(trace, *fragments, dump=True) -> None:
    """replay, check, info (and dump --pid): one line, exit 2."""
    for args in (("replay", trace), ("check", trace), ("info", trace)) + \
            ((("dump", "--pid", 1, trace),) if dump else ()):
        proc = run_cli(*args)
        clean(proc)
        assert_one_line_error(proc, 2, *fragments)


@pytest.mark.parametrize("name, change, fragment", [
    ("pid-bool", set_row(1, pid=True), "processes.jsonl: corrupted at line 2"),
    ("pid-string", set_row(1, pid="947"), "processes.jsonl: corrupted at line 2"),
    ("parent-itself", set_row(1, parent=1), "corrupted at line 2 (its parent)"),
    ("parent-negative", set_row(1, parent=-1), "corrupted at line 2 (its parent)"),
    ("parent-event-negative", set_row(1, parent_event=-1), "corrupted at line 2 (its parent)"),
    ("parent-event-float", set_row(1, parent_event=42.0), "corrupted at line 2 (its parent)"),
    ("second-root", set_row(1, parent=None), "processes.jsonl: corrupted at line 2"),
    ("index-wrong", set_row(1, index=5), "processes.jsonl: corrupted at line 2"),
    ("line-missing", lambda rows: rows[:1],
     "a frame belongs to a process that processes.jsonl does not list"),
])
def test_a_damaged_process_list_is_refused(forked, tmp_path, name, change, fragment):
    trace = fresh(forked, tmp_path)
    edit_lines(trace, "processes.jsonl", change)
    all_refuse(trace, fragment)


def test_a_frame_of_a_process_that_does_not_exist(forked, tmp_path):
    trace = fresh(forked, tmp_path)
    path = trace / "events.idx"
    raw = path.read_bytes()
    records = [list(INDEX_RECORD.unpack_from(raw, len(INDEX_MAGIC) + i * INDEX_RECORD.size))
               for i in range((len(raw) - len(INDEX_MAGIC)) // INDEX_RECORD.size)]
    assert records[-1][5] == 1
    records[-1][5] = 5
    path.write_bytes(INDEX_MAGIC + b"".join(INDEX_RECORD.pack(*r) for r in records))
    rehash(trace)
    all_refuse(trace, "a frame belongs to a process that processes.jsonl does not list")
    rc_proc = run_cli(trace, "--workers", 1, "--json", tmp_path / "r.json")
    assert_one_line_error(rc_proc, 2, "does not list")


def test_a_checkpoint_file_naming_another_process(forked, tmp_path):
    trace = fresh(forked, tmp_path)
    [row] = [json.loads(line) for line in (trace / "checkpoints.jsonl").read_text().splitlines()
             if json.loads(line)["process"] == 1][:1]
    path = trace / "checkpoints" / ("%06d.json" % row["id"])
    ckpt = json.loads(path.read_text())
    ckpt["process"] = 0
    path.write_text(json.dumps(ckpt, sort_keys=True) + "\n")
    rehash(trace)
    msg = f"checkpoint {row['id']} is corrupted (id, process or event do not match"
    assert_one_line_error(run_cli("replay", trace), 2, msg)
    check_error(trace, msg)


@pytest.mark.parametrize("how", ["line-names-process-0", "out-of-order"])
def test_checkpoint_lines_out_of_order(forked, tmp_path, how):
    trace = fresh(forked, tmp_path)
    rows = [json.loads(line) for line in (trace / "checkpoints.jsonl").read_text().splitlines()]
    child = [r["id"] for r in rows if r["process"] == 1]
    assert len(child) >= 2

    def change(rows):
        if how == "line-names-process-0":
            rows[child[0]]["process"] = 0        # event 0 of process 0, after its event 1
        else:
            rows[child[0]]["event"], rows[child[1]]["event"] = \
                rows[child[1]]["event"], rows[child[0]]["event"]
        return rows
    edit_lines(trace, "checkpoints.jsonl", change)
    all_refuse(trace, "checkpoints.jsonl: checkpoint", "out of order or past the end",
               dump=False)


@pytest.mark.parametrize("pid", [-5, 2**70, 999999])
def test_a_child_pid_that_is_not_what_the_fork_returned(forked, tmp_path, pid):
    trace = fresh(forked, tmp_path)
    edit_lines(trace, "processes.jsonl", set_row(1, pid=pid))
    replay_rc(trace, 1, "cross-process divergence (fork-pid)", f"the child recorded there is {pid}")
    check_ok(trace)
    proc = run_cli("info", trace)
    assert proc.returncode == 0 and str(pid).encode() in proc.stdout, clean(proc)
    if pid == -5:
        rc, report = verify_report(trace, tmp_path)
        assert rc == 1 and report["status"] == "failed" and not bad_segments(report)
        assert [d["check"] for d in report["cross_process"]] == ["fork-pid"]


def test_an_extra_process_with_no_events(forked, tmp_path):
    """A listed child with no stream and no checkpoint, claiming the same fork."""
    trace = fresh(forked, tmp_path)
    edit_lines(trace, "processes.jsonl", lambda rows: rows + [dict(rows[1], index=2, pid=999)])
    replay_rc(trace, 1, "cross-process divergence (fork-pid)", "the child recorded there is 999")


@pytest.mark.parametrize("parent_event", [10**6, 2**64 - 1])
def test_a_parent_event_past_the_parents_stream(forked, tmp_path, parent_event):
    """Not checked by the reader (trace-format.md §1.1): a child born where its whole parent
    made no fork is a fork-pid divergence (docs/checks.md §13.2); nothing crashes."""
    trace = fresh(forked, tmp_path)
    edit_lines(trace, "processes.jsonl", set_row(1, parent_event=parent_event))
    replay_rc(trace, 1, "cross-process divergence (fork-pid)",
              f"recorded as born at event {parent_event} of process",
              "where no fork returned a child")
    rc, report = verify_report(trace, tmp_path)
    assert rc == 1 and report["totals"]["verified"] == report["totals"]["segments"]
    assert [d["check"] for d in report["cross_process"]] == ["fork-pid"]
    check_ok(trace)
    assert run_cli("info", trace).returncode == 0


@pytest.mark.parametrize("pid", ["1", "-1", "123456789012345678901234567890", "x"])
def test_dump_pid_of_no_process(forked, pid):
    proc = run_cli("dump", "--pid", pid, forked)
    clean(proc)
    assert proc.returncode == 2, proc.stderr.decode()
    assert len([l for l in proc.stderr.decode().splitlines() if l.strip()]) <= 2   # argparse: usage + error
