"""Every divergence check fires on a replay that really diverges, at exactly the right event."""
from __future__ import annotations

import json
import os
import re

import pytest

from rrverify import events as E
from rrverify.recorder.syscalls import NUMBERS
from conftest import record, replay, run_cli
from traceedit import nth_event, put_blob, rehash, rewrite_events


def diverged_at(proc) -> tuple[int, str]:
    out = proc.stdout.decode()
    assert proc.returncode == 1, out + proc.stderr.decode()
    m = re.search(r"divergence at event (\d+) \(task \d+\): ([\w-]+):", out)
    assert m, out
    return int(m.group(1)), m.group(2)


def edit_one(trace, target: E.Event, change) -> None:
    def edit(ev):
        if ev.index == target.index:
            change(ev)
        return ev
    rewrite_events(trace, edit)


@pytest.fixture
def fileio_trace_traced(programs, tmp_path):
    """fileio.c recorded without syscall buffering: its write is a traced SYSCALL event (a
    buffered one's digest is edited in tests/test_syscallbuf.py)."""
    trace = tmp_path / "t"
    assert run_cli("record", "--no-syscallbuf", "-o", trace, "--", programs["fileio"],
                   str(tmp_path)).returncode == 0
    return trace


@pytest.fixture
def fileio_trace(programs, tmp_path):
    trace = tmp_path / "t"
    assert record(trace, programs["fileio"], str(tmp_path)).returncode == 0
    assert replay(trace).returncode == 0
    return trace


def test_rdrand_diverges_and_says_where(programs, tmp_path):
    """rdrand cannot be trapped: its value reaches write()'s data, whose digest differs."""
    trace = tmp_path / "t"
    assert record(trace, programs["rdrand"]).returncode == 0
    proc = replay(trace, "--json", tmp_path / "r.json")
    index, check = diverged_at(proc)
    assert check == "data"
    # its write is buffered: the divergence is at the flush that holds it, and names the
    # program's own site in libc as well as its stub's syscall
    target = nth_event(trace, lambda e: e.kind == E.FLUSH and any(
        r.nr == NUMBERS["write"] for r in E.buffered_syscalls(e)))
    assert index == target.index
    out = proc.stdout.decode()
    assert "(write) sends differs" in out and "libc.so.6" in out and "syscall" in out
    assert f"rrverify replay {trace}" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "diverged" and report["divergence"]["event"] == index
    assert report["divergence"]["ip"]["disassembly"][0].endswith("syscall")


def test_edited_register_diverges_at_exactly_that_event(fileio_trace):
    target = nth_event(fileio_trace, lambda e: e.kind == E.SYSCALL, 40)
    edit_one(fileio_trace, target, lambda ev: ev.regs.__setitem__("rbx", ev.regs["rbx"] ^ 0x10))
    proc = replay(fileio_trace)
    assert diverged_at(proc) == (target.index, "registers")
    assert re.search(r"rbx: expected 0x[0-9a-f]+, found 0x[0-9a-f]+", proc.stdout.decode())


def test_edited_syscall_number_diverges(fileio_trace):
    target = nth_event(fileio_trace, lambda e: e.kind == E.SYSCALL, 30)
    edit_one(fileio_trace, target, lambda ev: setattr(ev, "nr", NUMBERS["getppid"]))
    proc = replay(fileio_trace)
    assert diverged_at(proc) == (target.index, "syscall")
    assert "syscall getppid" in proc.stdout.decode()


def test_edited_fpu_digest_diverges(fileio_trace):
    target = nth_event(fileio_trace, lambda e: e.kind == E.SYSCALL, 25)
    edit_one(fileio_trace, target, lambda ev: setattr(ev, "fpu_digest", ev.fpu_digest ^ 1))
    assert diverged_at(replay(fileio_trace)) == (target.index, "fpu-state")


def test_edited_sent_data_digest_diverges(fileio_trace_traced):
    fileio_trace = fileio_trace_traced
    target = nth_event(fileio_trace, lambda e: e.kind == E.SYSCALL and e.nr == NUMBERS["write"]
                       and e.result > 0)
    edit_one(fileio_trace, target, lambda ev: setattr(ev, "aux", ev.aux ^ 1))
    assert diverged_at(replay(fileio_trace)) == (target.index, "data")


def test_executed_syscall_result_is_checked(fileio_trace):
    target = nth_event(fileio_trace, lambda e: e.kind == E.SYSCALL and e.nr == NUMBERS["brk"], 1)
    edit_one(fileio_trace, target, lambda ev: setattr(ev, "result", ev.result + 4096))
    assert diverged_at(replay(fileio_trace)) == (target.index, "syscall-result")


def test_exit_status_is_checked(fileio_trace):
    target = nth_event(fileio_trace, lambda e: e.kind == E.EXIT)
    edit_one(fileio_trace, target, lambda ev: setattr(ev, "nr", 5 << 8))
    assert diverged_at(replay(fileio_trace)) == (target.index, "exit-status")


def test_signal_siginfo_is_checked(programs, tmp_path):
    trace = tmp_path / "t"
    assert record(trace, programs["segv_handler"]).returncode == 0
    target = nth_event(trace, lambda e: e.kind == E.SIGNAL)

    def change(ev):
        si = bytearray(ev.extra)
        si[16] ^= 0x40          # si_addr
        ev.extra = bytes(si)
    edit_one(trace, target, change)
    assert diverged_at(replay(trace)) == (target.index, "siginfo")


def test_missing_event_is_an_event_kind_divergence(fileio_trace):
    """Replay makes a syscall where the trace says the program exited."""
    target = nth_event(fileio_trace, lambda e: e.kind == E.SYSCALL, 10)
    edit_one(fileio_trace, target, lambda ev: (setattr(ev, "kind", E.EXIT), setattr(ev, "nr", 0),
                                               ev.writes.clear(), setattr(ev, "extra", b"")))
    assert diverged_at(replay(fileio_trace)) == (target.index, "event-kind")


def test_injected_memory_is_what_the_program_sees(fileio_trace):
    """Corrupting the data a read() returned changes what the program computes: a later event
    diverges (its write() data or registers), never 'verified'."""
    target = nth_event(fileio_trace, lambda e: e.kind == E.SYSCALL and e.nr == NUMBERS["read"]
                       and e.result > 100)

    def change(ev):
        w = ev.writes[0]
        w.data = bytes([w.data[0] ^ 0xff]) + w.data[1:]
    edit_one(fileio_trace, target, change)
    index, check = diverged_at(replay(fileio_trace))
    assert index > target.index


def test_different_signal_is_a_signal_divergence(programs, tmp_path):
    trace = tmp_path / "t"
    assert record(trace, programs["segv_handler"]).returncode == 0
    target = nth_event(trace, lambda e: e.kind == E.SIGNAL)
    edit_one(trace, target, lambda ev: setattr(ev, "nr", 7))       # "SIGBUS" was recorded
    index, check = diverged_at(replay(trace))
    assert (index, check) == (target.index, "signal")


@pytest.fixture
def checkpointed(programs, tmp_path):
    """fileio recorded with a checkpoint every 20 events; returns (trace, checkpoint 2 path)."""
    from conftest import run_cli
    trace = tmp_path / "ck"
    proc = run_cli("record", "-o", trace, "--checkpoint-every", 20, "--",
                   programs["fileio"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert replay(trace).returncode == 0
    return trace, trace / "checkpoints" / "000002.json"


def _edit_checkpoint(path, change):
    c = json.loads(path.read_text())
    change(c)
    path.write_text(json.dumps(c))
    rehash(path.parent.parent)


def _other_xmm0(trace_dir):
    """A change to a checkpoint: XMM0 in its XSAVE area differs, its fpu_digest follows."""
    from rrverify._native import lib
    from rrverify.trace import Trace

    def change(c):
        area = bytearray(Trace(str(trace_dir)).blob(bytes.fromhex(c["xstate"])))
        area[160] ^= 1                                   # XMM0's first byte (legacy area)
        c["xstate"] = put_blob(trace_dir, bytes(area)).hex()
        c["fpu_digest"] = lib.rrv_fpu_digest_of(bytes(area), len(area))
    return change


@pytest.mark.parametrize("what,change", [
    ("registers", lambda c: c["regs"].__setitem__("r12", c["regs"]["r12"] ^ 8)),
    ("fpu-state", "xmm0"),
    ("brk", lambda c: c["mm"].__setitem__("brk", c["mm"]["brk"] + 4096)),
    ("signal-state", lambda c: c["signals"].__setitem__("mask", c["signals"]["mask"] ^ (1 << 9))),
    ("address-space", lambda c: c["regions"][0].__setitem__(
        "perms", "rw" + c["regions"][0]["perms"][2:])),
])
def test_checkpoint_comparison_checks_fire(what, change, checkpointed):
    """Segment 1 ends at checkpoint 2: a checkpoint that says otherwise than the replay."""
    trace, path = checkpointed
    _edit_checkpoint(path, _other_xmm0(trace) if change == "xmm0" else change)
    from conftest import run_cli
    proc = run_cli("replay", trace, "--segment", 1)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout.decode()
    assert "checkpoint: state differs from checkpoint 2: " in out
    assert what in out.split("state differs from checkpoint 2: ")[1].splitlines()[0]


def test_a_signal_frame_the_recording_did_not_write_diverges(programs, tmp_path):
    """The recording captures the frame the kernel wrote for a handler; a trace whose SIGNAL
    event says no frame was written (no handler) while replay writes one diverges there."""
    trace = tmp_path / "t"
    assert record(trace, programs["signal_handler_sync"]).returncode == 0
    assert replay(trace).returncode == 0
    handled = nth_event(trace, lambda e: e.kind == E.SIGNAL and e.writes)
    assert handled.writes[0].length == 440           # struct rt_sigframe, then its FPU area
    edit_one(trace, handled, lambda ev: ev.writes.clear())
    proc = replay(trace)
    index, check = diverged_at(proc)
    assert check == "signal"
    assert "was delivered without a handler in the recording, to one in replay" in proc.stdout.decode()
