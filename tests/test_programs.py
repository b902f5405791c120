"""Every tests/programs/*.c is recorded and replay-verified; the recording passes the
program's output and exit status through unchanged."""
from __future__ import annotations

import os

import pytest

from conftest import PROGRAM_SOURCES, native, record, replay

# What is special about a program; a program not listed is deterministic, exits 0, verifies.
EXPECT = {
    "exit_code": {"status": 3},
    "abort": {"status": 128 + 6},
    "sigpipe": {"status": 128 + 13},
    "getrandom": {"deterministic": False},
    "clocks": {"deterministic": False},
    "rdtsc": {"deterministic": False},
    "rdrand": {"deterministic": False, "replay": "diverged"},
    "threads": {"record": "unsupported"},
    "unknown_syscall": {"record": "unsupported"},
    "async_signal": {"record": "unsupported"},
    "syscall_loop": {"args": ["2000", "500"]},
    "int80_unlink": {"record": "unsupported"},
    "unknown_ioctl": {"record": "unsupported"},
    "x32_syscall": {"record": "unsupported"},
    "read_then_exit": {"args": ["/etc/passwd"]},
    "fork_child": {"processes": 2},
    "wait_forget": {"processes": 2},
    "pipe_sink": {"args": []},
    # (its children print the CPUs they may run on, in either order)
    "two_busy": {"args": [], "deterministic": False, "processes": 3},
    # (a sibling whose real parent is the recorder: it must stay on its tracer thread)
    "clone_parent": {"args": [], "deterministic": False, "processes": 2},
    "signal_moved": {"args": [], "processes": 8},
    "waitid_child": {"processes": 2},
    "shared_turns": {"processes": 2},
    "shared_spin": {"record": "unsupported"},       # test_shared_memory.py
    "shm_two_mappers": {"record": "unsupported"},
    "shm_apart": {"record": "unsupported"},          # test_shared_memory.py
    "posix_spawn": {"processes": 3},
    "vfork_write": {"processes": 2},
    "vfork_killed": {"processes": 3},
    "signal_parent": {"processes": 2},
    "kill_spinning": {"processes": 3},
    "execveat_true": {"processes": 3},
    "orphan": {"processes": 3},
    "shared_anon": {"processes": 2},
    "reserve": {"args": ["/etc/passwd"]},
    "default_action_fork": {"processes": 2},
    "job_stop": {"record": "interactive"},
    # test_job_control.py sends it SIGCONT
}
NAMES = [n for n in (os.path.splitext(os.path.basename(p))[0] for p in PROGRAM_SOURCES)
         if EXPECT.get(n, {}).get("record") is None]   # test_unsupported.py has the others


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(reason=EXPECT[n]["xfail"], strict=True))
    if "xfail" in EXPECT.get(n, {}) else n for n in NAMES])
def test_program_records_and_replays(name, programs, tmp_path):
    expect = EXPECT.get(name, {})
    args = [programs[name], *expect.get("args", [str(tmp_path)])]
    trace = tmp_path / "trace"
    rec = record(trace, *args)
    status = expect.get("status", 0)
    assert rec.returncode == status, rec.stderr.decode()
    if expect.get("deterministic", True):
        nat = native(*args)
        assert rec.stdout == nat.stdout
    rep = replay(trace)
    if expect.get("replay", "verified") == "verified":
        assert rep.returncode == 0, rep.stdout.decode() + rep.stderr.decode()
        processes = EXPECT.get(name, {}).get("processes", 1)
        assert rep.stdout.decode().startswith(
            f"verified: {processes} process{'es' if processes > 1 else ''}, ")
    else:
        assert rep.returncode == 1, rep.stdout.decode() + rep.stderr.decode()
        assert "divergence at event" in rep.stdout.decode()


def test_output_passthrough_matches_native_exactly(programs, tmp_path):
    """The recorded run's stdout equals a native run's, byte for byte, for a program with
    deterministic output; the tracee's stdin reaches it live."""
    trace = tmp_path / "cat"
    rec = record(trace, "/bin/cat", input=b"line one\nline two\n")
    assert rec.returncode == 0
    assert rec.stdout == b"line one\nline two\n"
    assert replay(trace).returncode == 0


def test_echo_reemits_recorded_output(programs, tmp_path):
    trace = tmp_path / "t"
    rec = record(trace, programs["pipe_self"])
    rep = replay(trace, "--echo")
    assert rep.returncode == 0
    assert rep.stdout.decode().startswith(rec.stdout.decode())
    silent = replay(trace)
    assert rec.stdout.decode() not in silent.stdout.decode()


def test_rdtsc_values_are_replayed(programs, tmp_path):
    """rdtsc/rdtscp trap; replay injects the recorded values, so the program's printed values
    (which reach write()'s data digest) match."""
    trace = tmp_path / "t"
    rec = record(trace, programs["rdtsc"])
    assert b"tsc increasing" in rec.stdout
    rep = replay(trace, "--echo")
    assert rep.returncode == 0
    assert rep.stdout.decode().startswith(rec.stdout.decode())


def test_vdso_clock_calls_become_recorded_syscalls(programs, tmp_path):
    """clocks.c calls clock_gettime/gettimeofday/time 1000 times each through the vDSO; the
    patched vDSO turns every call into a recorded syscall: buffered, but for each function's
    first, which patches its site."""
    from rrverify import events as E
    from rrverify.recorder.syscalls import NUMBERS
    from rrverify.trace import Trace
    trace = tmp_path / "t"
    assert record(trace, programs["clocks"]).returncode == 0
    counts = {}
    for ev in Trace(str(trace)).events():
        counts[ev.nr] = counts.get(ev.nr, 0) + (ev.kind == E.SYSCALL)
        for rec in E.buffered_syscalls(ev) if ev.kind == E.FLUSH else ():
            counts[rec.nr] = counts.get(rec.nr, 0) + 1
    assert counts.get(NUMBERS["clock_gettime"], 0) >= 2000
    assert counts.get(NUMBERS["gettimeofday"], 0) >= 1000
    assert counts.get(NUMBERS["time"], 0) >= 1000
