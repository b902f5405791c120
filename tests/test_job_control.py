"""A job-control stop of the tracee (SIGSTOP or Ctrl-Z, then SIGCONT) is recorded, leaves the
program stopped as it would be without rrverify, and replays."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import children_of, replay, run_cli


def _children(pid: int) -> list[int]:
    return children_of(pid)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_stopped_tracee_stays_stopped_until_sigcont(programs, tmp_path):
    trace = tmp_path / "t"
    rec = subprocess.Popen([sys.executable, "-m", "rrverify", "record", "-o", trace, "--",
                            programs["job_stop"]], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        tracee = None
        while time.monotonic() < deadline:
            kids = _children(rec.pid)
            if kids and _state(kids[0]) in "tT":
                tracee = kids[0]
                break
            time.sleep(0.05)
        assert tracee is not None, "the tracee never stopped"
        time.sleep(0.3)
        assert _state(tracee) in "tT" and rec.poll() is None     # still stopped, still recording
        os.kill(tracee, signal.SIGCONT)
        assert rec.stdout.readline() == b"stopping\n" and rec.stdout.readline() == b"continued\n"
        time.sleep(0.3)                    # in its one-second nanosleep now
        os.kill(tracee, signal.SIGSTOP)
        time.sleep(0.3)
        os.kill(tracee, signal.SIGCONT)    # the kernel continues it with restart_syscall
        out, err = rec.communicate(timeout=60)
    finally:
        if rec.poll() is None:
            rec.kill()
    assert rec.returncode == 0, err.decode()
    assert out == b"slept: 0\n"
    dump = run_cli("dump", trace).stdout.decode()
    assert "signal SIGSTOP (at syscall exit)" in dump and "signal SIGCONT (at syscall exit)" in dump
    assert "restart_syscall" in dump
    proc = replay(trace)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
