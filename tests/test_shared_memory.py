"""Processes that share writable memory: run one at a time while recorded, each one's events
carrying what the others changed in it (docs/checks.md §13.3, recorder/shared_memory.c)."""
from __future__ import annotations

import shutil

import pytest

from conftest import assert_one_line_error, native, record, replay, run_cli
from rrverify import events as E
from rrverify.recorder.syscalls import NUMBERS
from rrverify.trace import Trace
from traceedit import rewrite_events

MAP_SHARED, MAP_ANONYMOUS = 0x01, 0x20


@pytest.fixture(scope="module")
def turns(programs, tmp_path_factory):
    trace = tmp_path_factory.mktemp("shared_turns") / "t"
    proc = record(trace, programs["shared_turns"])
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == native(programs["shared_turns"]).stdout
    return trace


def shared_page(trace) -> int:
    for ev in Trace(str(trace)).stream(0).events():
        if ev.kind == E.SYSCALL and ev.nr == NUMBERS["mmap"] and \
                ev.regs["r10"] & (MAP_SHARED | MAP_ANONYMOUS) == MAP_SHARED | MAP_ANONYMOUS:
            return ev.result
    raise LookupError("no shared mapping")


def test_two_processes_taking_turns_on_a_shared_page_verify(turns):
    rep = replay(turns)
    assert rep.returncode == 0, rep.stdout.decode()
    assert rep.stdout.decode().startswith("verified: 2 processes, ")
    page = shared_page(turns)
    # Each side's syscalls carry the other's changes to the page, made while it was in the
    # kernel (its read waiting for the turn, or its write, which hands the turn over).
    for p in (0, 1):
        carried = [ev for ev in Trace(str(turns)).stream(p).events()
                   if ev.kind == E.SYSCALL and ev.nr in (NUMBERS["read"], NUMBERS["write"]) and
                   any(page <= w.addr < page + 4096 for w in ev.writes)]
        assert len(carried) >= 19, (p, len(carried))


def test_dropping_the_other_process_changes_diverges(turns, tmp_path):
    trace = tmp_path / "t"
    shutil.copytree(turns, trace)
    page = shared_page(turns)

    def edit(ev):
        if ev.process == 1:
            ev.writes = [w for w in ev.writes if not page <= w.addr < page + 4096]
        return ev
    rewrite_events(trace, edit)
    rep = replay(trace)
    assert rep.returncode == 1, rep.stdout.decode()
    assert "divergence" in rep.stdout.decode()
    # The reproduce line names a segment of the process that diverged (the child's).
    k = int(rep.stdout.decode().split("--segment ")[1].split()[0])
    assert Trace(str(trace)).checkpoints[k]["process"] == 1


def test_a_process_spinning_on_shared_memory_ends_recording_clearly(programs, tmp_path):
    trace = tmp_path / "t"
    proc = record(trace, programs["shared_spin"], timeout=60)
    line = assert_one_line_error(proc, 2, "record: unsupported shared memory in process",
                                 "share writable memory (a MAP_SHARED mapping at 0x",
                                 "ran for 2.0 s without a ptrace stop while",
                                 "needs preemption at execution points")
    assert str(trace) in line
    rep = replay(trace)
    assert rep.returncode == 0 and "incomplete trace: verified up to its end" in rep.stdout.decode()


@pytest.mark.parametrize("program, name", [("shm_two_mappers", "rrverify-test-"),
                                           ("shm_apart", "rrverify-apart-")])
def test_an_object_mapped_shared_by_two_processes_on_their_own_is_refused(
        program, name, programs, tmp_path):
    """shm_two_mappers: a parent and its child, traced by one thread; shm_apart: two children
    the recorder traces from different tracer threads (where it has two CPUs: the second to
    exec moves), the check reading every live process of the recording."""
    trace = tmp_path / "t"
    proc = record(trace, programs[program], timeout=60)
    assert_one_line_error(proc, 2, "record: unsupported shared memory in process",
                          f"both map /dev/shm/{name}", "shared, each on its own")
    info = run_cli("info", trace)
    assert info.returncode == 0 and "INCOMPLETE" in info.stdout.decode()


# syscalls that can wait for another process: made through ptrace by a sharing process
MAY_WAIT = {NUMBERS[n] for n in ("read", "readv", "write", "writev", "openat")}
FUTEX_WAIT, FUTEX_WAIT_BITSET = 0, 9


def may_wait(rec) -> bool:
    return rec.nr in MAY_WAIT or (rec.nr == NUMBERS["futex"] and
                                  rec.args[1] & ~(128 | 256) in (FUTEX_WAIT, FUTEX_WAIT_BITSET))


RUNS = 150      # shared_turns.c's syscall runs before each turn: longer than 64


def test_processes_sharing_memory_buffer_what_cannot_wait_in_short_runs(programs, tmp_path):
    """A process that shares memory buffers the syscalls that wait on nothing but the kernel,
    at most 64 between two ptrace stops (where the turn passes); its reads and writes of the
    pipes it waits on stay traced: buffered, the one holding the turn would wait without a
    stop for the one it keeps from running (checks.md §13.3). Both verify."""
    trace = tmp_path / "t"
    proc = record(trace, programs["shared_turns"], RUNS)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == native(programs["shared_turns"], RUNS).stdout
    events = list(Trace(str(trace)).stream(1).events())
    child = [ev for ev in events if ev.kind == E.FLUSH]
    records = [rec for ev in child for rec in E.buffered_syscalls(ev)]
    work = {NUMBERS[n] for n in ("newfstatat", "fstat", "clock_gettime", "getpid")}
    traced = [ev for ev in events if ev.kind == E.SYSCALL and ev.nr in work]
    made = 20 * RUNS * 3        # its runs of fstat, clock_gettime, getpid, 20 turns
    assert len(records) + len(traced) >= made
    assert len(traced) <= made // 64 + 10               # the 65th of a run traced
    assert max(len(E.buffered_syscalls(ev)) for ev in child) == 64
    assert not [rec for rec in records if may_wait(rec)]
    rep = replay(trace)
    assert rep.returncode == 0, rep.stdout.decode() + rep.stderr.decode()
    assert rep.stdout.decode().startswith("verified: 2 processes, ")


def test_serialize_runs_a_pipeline_one_process_at_a_time_buffering_what_cannot_wait(tmp_path):
    """record --serialize (rr's way): every process takes turns, as processes that share
    memory do, so each buffers only what cannot wait for another (cat's writes into the
    pipe and sort's reads from it go through ptrace, or the one holding the turn would wait
    for the one it keeps from running) and verifies."""
    trace = tmp_path / "t"
    cmd = ["/bin/sh", "-c", "cat /etc/services | sort | head -3"]
    proc = run_cli("record", "--serialize", "-o", trace, "--", *cmd)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == native(*cmd).stdout
    t = Trace(str(trace))
    assert t.manifest["recorder"]["serialize"] is True
    flushes = [ev for ev in t.events() if ev.kind == E.FLUSH]
    records = [rec for ev in flushes for rec in E.buffered_syscalls(ev)]
    assert len({ev.process for ev in flushes}) >= 2 and records
    assert max(len(E.buffered_syscalls(ev)) for ev in flushes) <= 64
    assert not [rec for rec in records if may_wait(rec)]
    rep = replay(trace)
    assert rep.returncode == 0, rep.stdout.decode() + rep.stderr.decode()
