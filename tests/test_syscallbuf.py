"""Syscall buffering (preload/): buffered syscalls are recorded without a ptrace stop and
verified by the syscall breakpoint; each breakpoint check, and the #3285 invariant check, fires
on a genuinely bad trace; the #3285 shapes (a handler that rewrites the interrupted ip, one
that siglongjmps out fifty times, one that makes buffered syscalls itself under SA_RESTART)
record and verify."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from rrverify import events as E
from rrverify.recorder.syscalls import NUMBERS
from rrverify.trace import Trace
from conftest import assert_one_line_error, native, record, replay, run_cli
from traceedit import rewrite_events


def flushes(trace) -> list[E.Event]:
    return [ev for ev in Trace(str(trace)).events() if ev.kind == E.FLUSH]


def buffered(trace) -> list[E.BufferedSyscall]:
    return [rec for ev in flushes(trace) for rec in E.buffered_syscalls(ev)]


def replay_json(trace, tmp_path, *extra) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "replay.json"
    proc = replay(trace, "--json", out, *extra)
    return proc, json.loads(out.read_text()) if out.exists() else {}


def check_of(proc) -> str:
    out = proc.stdout.decode()
    assert proc.returncode == 1, out + proc.stderr.decode()
    m = re.search(r"divergence at event \d+ \(task \d+\): ([\w-]+):", out)
    assert m, out
    return m.group(1)


@pytest.fixture(scope="module")
def loop_trace(programs, tmp_path_factory):
    """sb_loop.c, 2000 iterations of pread/write/fstat/clock_gettime/getpid, recorded with a
    checkpoint every 2000 events (buffered syscalls count)."""
    trace = tmp_path_factory.mktemp("loop") / "t"
    proc = run_cli("record", "-o", trace, "--checkpoint-every", 2000, "--", programs["sb_loop"])
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == native(programs["sb_loop"]).stdout
    return trace


@pytest.fixture
def loop_copy(loop_trace, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(loop_trace, copy)
    return copy


def test_a_loop_of_common_syscalls_is_buffered_and_verified(loop_trace, tmp_path):
    recs = buffered(loop_trace)
    names = {rec.nr for rec in recs}
    # newfstatat: glibc's fstat; getpid: a `syscall; ret` wrapper, patched with its padding
    for name in ("pread64", "write", "newfstatat", "clock_gettime", "getpid"):
        assert NUMBERS[name] in names, name
    assert len(recs) >= 5 * 2000 - 10          # every one, bar each site's first
    trace = Trace(str(loop_trace))
    assert trace.manifest["recorder"]["syscallbuf"] is True
    traced = sum(1 for ev in trace.events() if ev.kind == E.SYSCALL)
    assert traced < 200                           # start-up and exit: a few dozen
    assert len(trace.checkpoints) >= 4            # a loop of buffered syscalls still checkpoints
    proc, rep = replay_json(loop_trace, tmp_path)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert rep["stats"]["buffered_syscalls"] == len(recs)
    # per record: syscall and arguments, site (+ the sent data for writes); per flush: every
    # record hit, breakpoint clear, buffer length; per checkpoint: breakpoint clear
    assert rep["stats"]["syscall_breakpoint_checks"] >= 2 * len(recs) + 3 * len(flushes(loop_trace))
    assert rep["stats"]["syscallbuf_invariant_checks"] >= len(trace.checkpoints)
    assert rep["stats"]["syscallbuf_invariant_violations"] == 0


def test_the_flush_before_a_checkpoint_zeroes_its_records(loop_trace):
    """A checkpoint would otherwise store a buffer's worth of stale records as new pages."""
    trace = Trace(str(loop_trace))
    events = list(trace.events())
    zeroed = 0
    for ckpt in trace.checkpoints[1:]:
        before = [ev for ev in events[:ckpt["event"]] if ev.kind == E.FLUSH]
        if not before:
            continue
        flush = before[-1]
        assert [w.addr for w in flush.writes][:1] == [flush.aux]
        if len(flush.writes) == 2:
            records = flush.writes[1]
            assert (records.addr, records.length) == (flush.aux + 64, flush.result)
            assert records.data == bytes(flush.result)
            zeroed += 1
    assert zeroed >= len(trace.checkpoints) - 2
    assert sum(len(ev.writes) == 2 for ev in events if ev.kind == E.FLUSH) <= zeroed + 2


def test_no_syscallbuf_records_every_syscall_through_ptrace(programs, tmp_path):
    trace = tmp_path / "t"
    proc = run_cli("record", "--no-syscallbuf", "-o", trace, "--", programs["sb_loop"], 300)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == native(programs["sb_loop"], 300).stdout
    t = Trace(str(trace))
    assert not flushes(trace)
    assert t.manifest["recorder"]["syscallbuf"] is False
    assert not any(e.startswith("LD_PRELOAD=") and "librrvpreload" in e for e in t.manifest["env"])
    assert sum(1 for ev in t.events() if ev.kind == E.SYSCALL and ev.nr == NUMBERS["pread64"]) >= 300
    assert replay(trace).returncode == 0


def test_dump_shows_buffered_syscalls_under_their_flush(loop_trace):
    out = run_cli("dump", loop_trace).stdout.decode()
    assert re.search(r"flush: \d+ buffered syscalls", out)
    assert re.search(r"buffered: pread64\(fd=3, .*count=256.*\) = \d+", out)
    # (pread64's own site, or another of libc's with it: the sites the analysis cache knows
    # from the suite's earlier recordings are patched with the first met)
    assert re.search(r"patch: syscall site 0x[0-9a-f]+ \(\w+\) now jumps to its stub at "
                     r"0x[0-9a-f]+", out)


def test_a_segment_in_the_middle_replays_buffered_syscalls(loop_trace, tmp_path):
    segments = [c["id"] for c in Trace(str(loop_trace)).segments]
    middle = segments[len(segments) // 2]
    proc, rep = replay_json(loop_trace, tmp_path, "--segment", middle)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert rep["stats"]["buffered_syscalls"] > 1000


# -- every syscall-breakpoint check fires on a trace that is really wrong ------------------

def edit_flush(trace, change, which=1, where=lambda recs: True) -> E.Event:
    """change(records, flush_event) on the `which`-th FLUSH that holds more than one record
    and whose records satisfy where(records)."""
    target = [ev for ev in flushes(trace)
              if ev.nr > 1 and where(E.buffered_syscalls(ev))][which]

    def edit(ev):
        if ev.index == target.index:
            recs = E.buffered_syscalls(ev)
            change(recs, ev)
            ev.extra = E.encode_buffered_syscalls(recs)
            ev.nr = len(recs)
        return ev
    rewrite_events(trace, edit)
    return target


def test_a_record_for_another_syscall_is_a_record_syscall_divergence(loop_copy):
    def change(recs, ev):
        recs[0].nr = NUMBERS["pwrite64"] if recs[0].nr != NUMBERS["pwrite64"] else NUMBERS["pread64"]
    edit_flush(loop_copy, change)
    assert check_of(replay(loop_copy)) == "syscallbuf-record-syscall"


def test_a_record_with_other_arguments_is_a_record_syscall_divergence(loop_copy):
    def change(recs, ev):
        rec = next(r for r in recs if r.nr == NUMBERS["pread64"])
        rec.args = (rec.args[0], rec.args[1], rec.args[2] + 1, *rec.args[3:])
    edit_flush(loop_copy, change)
    assert check_of(replay(loop_copy)) == "syscallbuf-record-syscall"


def test_a_record_from_another_site_is_a_record_site_divergence(loop_copy):
    def change(recs, ev):
        recs[0].site += 64
    edit_flush(loop_copy, change)
    assert check_of(replay(loop_copy)) == "syscallbuf-record-site"


def test_a_removed_record_is_an_extra_record_divergence(loop_copy):
    """The program makes a buffered syscall the flush no longer holds: with no record left the
    breakpoint is clear, and the syscall reaches the tracer instead (never run)."""
    def change(recs, ev):      # its size in the trace is its size in the buffer: it sent nothing
        last = recs.pop()
        ev.result -= len(E.encode_buffered_syscalls([last]))
    edit_flush(loop_copy, change, which=0,
               where=lambda recs: recs[-1].sent_digest is None and recs[-1].pipe is None)
    assert check_of(replay(loop_copy)) == "syscallbuf-extra-record"


def test_an_extra_record_is_a_missing_record_divergence(loop_copy):
    """The flush holds one more record than the program makes: it reaches its next traced
    syscall with the breakpoint still armed."""
    def change(recs, ev):
        recs.append(recs[-1])
        ev.result += len(E.encode_buffered_syscalls([recs[-1]]))
    edit_flush(loop_copy, change, which=-1)
    assert check_of(replay(loop_copy)) == "syscallbuf-missing-record"


def test_a_flush_length_that_is_not_the_buffers_is_a_divergence(loop_copy):
    def change(recs, ev):
        ev.result += 8
    edit_flush(loop_copy, change)
    assert check_of(replay(loop_copy)) == "syscallbuf-flush-length"


def test_edited_sent_data_of_a_buffered_write_is_a_data_divergence(loop_copy):
    def change(recs, ev):
        rec = next(r for r in recs if r.nr == NUMBERS["write"])
        rec.sent_digest ^= 1
    edit_flush(loop_copy, change)
    assert check_of(replay(loop_copy)) == "data"


def test_edited_output_of_a_buffered_read_reaches_the_program(loop_copy):
    """What replay injects for a buffered pread is what the program computes with: changed,
    the data it then writes differs."""
    def change(recs, ev):
        rec = next(r for r in recs if r.nr == NUMBERS["pread64"])
        w = rec.writes[0]
        w.data = bytes([w.data[0] ^ 0xff]) + w.data[1:]
    edit_flush(loop_copy, change)
    assert check_of(replay(loop_copy)) == "data"


def test_a_malformed_record_is_a_trace_error_naming_the_flush_and_record(loop_copy):
    target = [ev for ev in flushes(loop_copy) if ev.nr > 1][1]

    def edit(ev):
        if ev.index == target.index:
            raw = bytearray(ev.extra)
            raw[0:4] = (int.from_bytes(raw[0:4], "little") + 4).to_bytes(4, "little")
            ev.extra = bytes(raw)
        return ev
    rewrite_events(loop_copy, edit)
    line = assert_one_line_error(replay(loop_copy), 2, f"event {target.index}")
    assert "buffered syscall 0" in line
    line = assert_one_line_error(run_cli("dump", loop_copy), 2, f"event {target.index} (flush)")
    assert "buffered syscall 0" in line


def test_a_signal_delivered_inside_the_preload_violates_the_invariant(programs, tmp_path):
    """A recorder that skips the unwinding (a test-only fault injection) hands the handler a
    thread at the untraced syscall: the trace replays as recorded up to where that breaks, and
    the invariant check reports every such delivery, in replay and in the verify report."""
    trace = tmp_path / "t"
    proc = record(trace, programs["sb_handler_io"], env={"RRVERIFY_TEST_DELIVER_IN_PRELOAD": "1"})
    assert proc.returncode == 0, proc.stderr.decode()
    proc, rep = replay_json(trace, tmp_path)
    assert proc.returncode == 1
    violations = rep["syscallbuf_invariant_violations"]
    assert violations and all(v["check"] == "syscallbuf-invariant" for v in violations)
    assert "inside the preload's buffering code" in violations[0]["detail"]
    assert rep["stats"]["syscallbuf_invariant_violations"] == len(violations)
    out = tmp_path / "verify.json"
    proc = run_cli(trace, "--workers", 1, "--json", out)
    report = json.loads(out.read_text())
    assert proc.returncode == 1 and report["status"] == "failed"
    assert report["totals"]["syscallbuf_invariant_violations"] >= 1


# -- rr issue #3285's shapes -----------------------------------------------------------------

@pytest.mark.parametrize("program, unwound", [("sb_rewrite_ip", 1), ("sb_siglongjmp", 50),
                                              ("sb_handler_io", 20)])
def test_signals_in_blocked_buffered_reads_are_delivered_outside_the_preload(
        programs, tmp_path, program, unwound):
    trace = tmp_path / "t"
    proc = record(trace, programs[program])
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == native(programs[program]).stdout
    events = list(Trace(str(trace)).events())
    assert sum(1 for ev in events if ev.kind == E.UNWIND) == unwound
    assert sum(1 for ev in events if ev.kind == E.SIGNAL) == unwound
    assert len(buffered(trace)) > 0
    proc, rep = replay_json(trace, tmp_path)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert rep["stats"]["syscallbuf_invariant_violations"] == 0
    assert rep["stats"]["syscallbuf_invariant_checks"] >= unwound


def test_a_signal_ends_a_blocked_buffered_read_with_eintr(programs, tmp_path):
    """Interrupted where it blocked, the buffered read is unwound to its stub and recorded as a
    traced read that the signal interrupted: without SA_RESTART it fails with EINTR, as
    natively, and the handler runs at its exit."""
    trace = tmp_path / "t"
    proc = record(trace, programs["sb_eintr"])
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == native(programs["sb_eintr"]).stdout
    assert proc.stdout.count(b"Interrupted system call") == 5
    events = list(Trace(str(trace)).events())
    at_exit = [ev for ev in events if ev.kind == E.SIGNAL and ev.flags & E.EF_AT_SYSCALL_EXIT]
    assert len(at_exit) == 5
    for sig in at_exit:      # after an UNWIND and the read it became
        read, unwind = events[sig.index - 1], events[sig.index - 2]
        assert (read.kind, read.nr, unwind.kind) == (E.SYSCALL, NUMBERS["read"], E.UNWIND)
    assert replay(trace).returncode == 0


def test_futex_waits_and_wakes_are_buffered_and_a_signalled_wait_restarts_as_natively(
        programs, tmp_path):
    """Wakes and waits without a timeout are buffered; a buffered wait that a signal
    interrupts is unwound and becomes a traced futex (EINTR, or restarted under SA_RESTART);
    a wait with a timeout stays traced."""
    trace = tmp_path / "t"
    proc = record(trace, programs["sb_futex"])
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == native(programs["sb_futex"]).stdout
    futexes = [rec for rec in buffered(trace) if rec.nr == NUMBERS["futex"]]
    assert len(futexes) >= 2 * 200 - 2
    assert {rec.result for rec in futexes} == {0, -11}          # woke none; EAGAIN
    events = list(Trace(str(trace)).events())
    traced = [ev for ev in events if ev.kind == E.SYSCALL and ev.nr == NUMBERS["futex"]]
    unwound = [ev for ev in events if ev.kind == E.UNWIND]
    assert len(unwound) >= 2                    # the two waits the timer's signal ended
    assert any(ev.result == -110 for ev in traced)    # the wait with a timeout: ETIMEDOUT
    proc, rep = replay_json(trace, tmp_path)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert rep["stats"]["buffered_syscalls"] == len(buffered(trace))


# -- processes, programs, and what is not buffered -----------------------------------------

def test_a_pipeline_buffers_in_every_process_and_checks_its_pipes(tmp_path):
    trace = tmp_path / "t"
    cmd = ["/bin/sh", "-c", "cat /etc/services | sort | head -3"]
    proc = record(trace, *cmd)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == native(*cmd).stdout
    t = Trace(str(trace))
    with_flushes = {ev.process for ev in t.events() if ev.kind == E.FLUSH}
    assert len(with_flushes) >= 3
    assert any(rec.pipe for rec in buffered(trace))      # cat's writes, sort's reads
    proc, rep = replay_json(trace, tmp_path)
    assert proc.returncode == 0, proc.stdout.decode()
    assert rep["cross_process_checks"] >= 2


def test_a_static_program_runs_unbuffered(tmp_path):
    src = tmp_path / "s.c"
    src.write_text('#include <stdio.h>\nint main(void){puts("static"); return 0;}\n')
    exe = tmp_path / "s"
    if subprocess.run(["gcc", "-static", "-o", exe, src], capture_output=True).returncode:
        pytest.skip("no static libc")
    trace = tmp_path / "t"
    proc = record(trace, exe)
    assert proc.returncode == 0 and proc.stdout == b"static\n", proc.stderr.decode()
    assert not flushes(trace)
    assert replay(trace).returncode == 0


def test_python_json_and_sort_are_buffered_and_verify(tmp_path):
    for n, cmd in enumerate([["/usr/bin/python3", "-c", "import json"],
                             ["/usr/bin/sort", "/etc/services"]]):
        trace = tmp_path / f"t{n}"
        proc = record(trace, *cmd)
        assert proc.returncode == 0, proc.stderr.decode()
        assert len(buffered(trace)) > 50, cmd
        assert replay(trace).returncode == 0, cmd


# -- hostile edits of the new events ---------------------------------------------------------

def edit_first(trace, kind, change) -> E.Event:
    target = next(ev for ev in Trace(str(trace)).events() if ev.kind == kind)

    def edit(ev):
        if ev.index == target.index and ev.process == target.process:
            change(ev)
        return ev
    rewrite_events(trace, edit)
    return target


def test_an_unwind_from_a_forged_buffer_is_a_divergence(programs, tmp_path):
    trace = tmp_path / "t"
    assert record(trace, programs["sb_handler_io"]).returncode == 0
    edit_first(trace, E.UNWIND, lambda ev: setattr(ev, "aux", 0x1000))
    proc = replay(trace)
    assert check_of(proc) == "syscallbuf-unwind"
    assert "unreadable" in proc.stdout.decode()


def test_an_unwind_to_other_registers_is_a_divergence(programs, tmp_path):
    trace = tmp_path / "t"
    assert record(trace, programs["sb_handler_io"]).returncode == 0
    edit_first(trace, E.UNWIND, lambda ev: ev.regs.update(rip=ev.regs["rip"] + 2))
    assert check_of(replay(trace)) == "syscallbuf-unwind"


def test_a_patch_of_another_site_is_a_trace_error(loop_copy):
    target = edit_first(loop_copy, E.PATCH, lambda ev: setattr(ev, "aux", ev.aux + 16))
    assert_one_line_error(replay(loop_copy), 2, f"patch event {target.index} names site")


def test_a_buffered_write_to_unmapped_memory_is_a_data_divergence(loop_copy):
    def change(recs, ev):
        rec = next(r for r in recs if r.writes)
        rec.writes[0].addr = 0x10000
    edit_flush(loop_copy, change)
    proc = replay(loop_copy)
    assert check_of(proc) == "data"
    assert "which replay does not have mapped" in proc.stdout.decode()


@pytest.fixture(scope="module")
def state_trace(programs, tmp_path_factory):
    """sb_process_state.c: handlers set and queried, anonymous memory mapped, the break moved,
    through the preload."""
    trace = tmp_path_factory.mktemp("state") / "t"
    proc = run_cli("record", "-o", trace, "--", programs["sb_process_state"])
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == native(programs["sb_process_state"]).stdout
    return trace


def test_buffered_syscalls_that_change_the_process_are_run_again_by_replay(state_trace,
                                                                          tmp_path):
    """A buffered rt_sigaction that sets a handler, mmap of anonymous memory and brk are run
    again by replay, as it runs them traced (the handler the last one set then runs for the
    signal: emulated, the replayed process would have none and die of it)."""
    recs = buffered(state_trace)
    sets = [r for r in recs if r.nr == NUMBERS["rt_sigaction"] and r.args[1]]
    queries = [r for r in recs if r.nr == NUMBERS["rt_sigaction"] and not r.args[1]]
    maps = [r for r in recs if r.nr == NUMBERS["mmap"]]
    breaks = [r for r in recs if r.nr == NUMBERS["brk"]]
    assert sets and queries and maps and breaks
    assert all(r.writes and r.writes[0].length == 32 for r in sets + queries)    # oldact
    proc, report = replay_json(state_trace, tmp_path)
    assert proc.returncode == 0, proc.stdout.decode()
    stats = report["stats"]
    assert stats["buffered_syscalls"] == len(recs)
    assert stats["syscalls_executed"] >= len(sets) + len(queries) + len(maps) + len(breaks)


def test_a_buffered_syscall_run_again_that_returns_otherwise_is_a_result_divergence(
        state_trace, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(state_trace, copy)

    def change(recs, ev):
        rec = next(r for r in recs if r.nr == NUMBERS["brk"])
        rec.result += 4096
    edit_flush(copy, change, which=0, where=lambda recs: any(r.nr == NUMBERS["brk"] for r in recs))
    proc = replay(copy)
    assert check_of(proc) == "syscall-result"
    assert "run again, returned a different result" in proc.stdout.decode()


def test_buffered_syscalls_with_sigtrap_blocked_leave_the_signal_state_alone(programs,
                                                                              tmp_path):
    """Replay's syscall breakpoint raises a forced SIGTRAP, which the kernel would unblock and
    reset to its default action if blocked or ignored (posix_spawn's child blocks every signal):
    such a flush, or the rest of one once a buffered rt_sigaction ignores SIGTRAP, is replayed
    at the syscalls' seccomp stops instead, and the checkpoints, which compare the mask and the
    actions, verify."""
    trace = tmp_path / "t"
    proc = run_cli("record", "-o", trace, "--checkpoint-every", 60, "--",
                   programs["sb_trap_blocked"])
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"sum 800, handler kept 1, SIGTRAP blocked 1\nsum 1200, SIGTRAP ignored 1\n"
    assert len(buffered(trace)) > 500
    assert len(Trace(str(trace)).checkpoints) >= 5
    rep, report = replay_json(trace, tmp_path)
    assert rep.returncode == 0, rep.stdout.decode()
    assert report["stats"]["buffered_syscalls"] == len(buffered(trace))


def test_a_record_of_a_syscall_the_preload_never_buffers_is_a_trace_error(loop_copy):
    """Checked when its flush begins, before anything of it is used or run."""
    target = edit_flush(loop_copy, lambda recs, ev: setattr(recs[0], "nr", NUMBERS["kill"]))
    line = assert_one_line_error(replay(loop_copy), 2, f"flush event {target.index}")
    assert "which the preload never buffers" in line
