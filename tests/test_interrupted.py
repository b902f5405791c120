"""A recorder killed by SIGKILL, or a tracee killed from outside, leaves a readable trace
marked incomplete that verifies up to where it ends."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from conftest import children_of, record, replay, run_cli


def _start_long_recording(programs, trace, *cmd):
    cmd = cmd or (programs["syscall_loop"], "100000000", "0")
    proc = subprocess.Popen([sys.executable, "-m", "rrverify", "record", "-o", str(trace), "--",
                             *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    idx = trace / "events.idx"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:   # wait until frames reach the disk
        if idx.exists() and idx.stat().st_size >= 8 + 3 * 48:
            return proc
        time.sleep(0.05)
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError(f"the recording wrote no frames: {err.decode()[-2000:]}")


def _tracee_of(recorder_pid: int) -> int:
    return children_of(recorder_pid)[0]


def _assert_incomplete_but_verifies(trace):
    info = run_cli("info", trace)
    assert info.returncode == 0, info.stderr
    assert "INCOMPLETE" in info.stdout.decode()
    rep = replay(trace, "--json", trace.parent / "replay.json")
    assert rep.returncode == 0, rep.stdout.decode() + rep.stderr.decode()
    out = rep.stdout.decode()
    assert "incomplete trace: verified up to its end" in out
    stats = json.loads((trace.parent / "replay.json").read_text())["stats"]
    # the loop's getppid calls: buffered, bar the first (docs/checks.md, syscall buffering)
    assert int(out.split(",")[1].split()[0]) + stats["buffered_syscalls"] > 1000


def test_recorder_killed_by_sigkill(programs, tmp_path):
    trace = tmp_path / "t"
    proc = _start_long_recording(programs, trace)
    tracee = _tracee_of(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    for _ in range(100):   # PTRACE_O_EXITKILL takes the tracee with it
        if not os.path.exists(f"/proc/{tracee}") or \
                open(f"/proc/{tracee}/stat").read().split()[2] == "Z":
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the tracee outlived its recorder")
    _assert_incomplete_but_verifies(trace)


def test_tracee_killed_from_outside(programs, tmp_path):
    trace = tmp_path / "t"
    proc = _start_long_recording(programs, trace)
    os.kill(_tracee_of(proc.pid), signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGKILL
    assert "trace incomplete" in err.decode() and "SIGKILL" in err.decode()
    _assert_incomplete_but_verifies(trace)


def _descendants(pid: int) -> list[int]:
    out = []
    for k in children_of(pid):
        out += [k] + _descendants(k)
    return out


def test_recorder_killed_during_a_process_tree(programs, tmp_path):
    """Every process's stream is usable up to where it ends, and no tracee outlives the
    recorder."""
    from rrverify import events as E
    from rrverify.trace import Trace
    trace = tmp_path / "t"
    loop = programs["syscall_loop"]
    proc = _start_long_recording(programs, trace, "/bin/sh", "-c",
                                 f"{loop} 100000000 0 & {loop} 100000000 0 & wait")
    deadline = time.monotonic() + 60
    while len(Trace(str(trace)).processes) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)       # both children write frames of their own
    tracees = _descendants(proc.pid)
    assert len(tracees) >= 3
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    for _ in range(100):
        alive = [t for t in tracees if os.path.exists(f"/proc/{t}") and
                 open(f"/proc/{t}/stat").read().split()[2] != "Z"]
        if not alive:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"tracees {alive} outlived their recorder")
    t = Trace(str(trace))
    assert not t.complete
    def calls(process: int) -> int:      # its events, and the syscalls its flushes hold
        return sum(ev.nr if ev.kind == E.FLUSH else 1 for ev in t.stream(process).events())
    busy = [p for p in t.processes if calls(p["index"]) > 1000]
    assert len(busy) == 2        # both loops' streams reached the disk
    rep = replay(trace)
    assert rep.returncode == 0, rep.stdout.decode() + rep.stderr.decode()
    assert rep.stdout.decode().startswith("verified: 3 processes, ")
    assert "incomplete trace: verified up to its end" in rep.stdout.decode()


def test_an_interrupted_process_tree_keeps_later_processes_checkpoints(tmp_path):
    """A recorder killed before some process's frames reached the disk: that process's
    checkpoints start no segment, and the other processes' later checkpoints keep their ids
    (a dropped row renumbering them broke loading them)."""
    import json
    from rrverify.trace import Trace
    trace = tmp_path / "t"
    assert record(trace, "/bin/sh", "-c", "echo a | cat; echo b | cat").returncode == 0
    t = Trace(str(trace))
    frames = t.frames
    # Keep the frames up to the first one of the last process, as if the rest never got out.
    last = max(f.process for f in frames)
    keep = next(i for i, f in enumerate(frames) if f.process == last)
    m = json.loads((trace / "manifest.json").read_text())
    m["complete"] = False
    for key in ("stats", "end", "integrity"):
        m.pop(key)
    (trace / "manifest.json").write_text(json.dumps(m))
    idx = (trace / "events.idx").read_bytes()
    (trace / "events.idx").write_bytes(idx[:8 + 48 * keep])
    t = Trace(str(trace))
    lost = [c for c in t.checkpoints if c not in t.segments]
    assert lost and any(c["id"] > lost[0]["id"] for c in t.segments)
    for c in t.segments:
        assert t.checkpoint(c["id"])["process"] == c["process"]
    rep = replay(trace)
    assert rep.returncode == 0, rep.stdout.decode() + rep.stderr.decode()
    assert "incomplete trace: verified up to its end" in rep.stdout.decode()
    out = tmp_path / "r.json"
    v = run_cli(trace, "--workers", "2", "--json", out)
    assert v.returncode == 0, v.stdout.decode() + v.stderr.decode()
    report = json.loads(out.read_text())
    assert [s["segment"] for s in report["segments"]] == [c["id"] for c in t.segments]


def test_a_tracee_killed_while_the_recorder_works_on_it_is_found_dead():
    """A SIGKILL from outside takes a tracee out of its stop at once and it exits a moment
    later: a ptrace request failing in between is its death, not a recorder error (a race that
    made `record` exit 2 instead of with the tracee's SIGKILL)."""
    from rrverify.errors import NativeError
    from rrverify.recorder.record import died_meanwhile
    pid = os.posix_spawn("/bin/sleep", ["sleep", "30"], dict(os.environ))

    def work():
        os.kill(pid, signal.SIGKILL)
        raise NativeError(f"PTRACE_GETREGS on pid {pid} failed")
    status = died_meanwhile(pid, work)
    assert status is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
