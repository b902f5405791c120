"""Replay is a sandbox and a trace cannot lie (DESIGN.md §4): what a hostile or damaged trace
tries here must neither run a real syscall on the verifying machine nor end in "verified"."""
from __future__ import annotations

import json
import os

import pytest

from rrverify import events as E
from rrverify.recorder.syscalls import NUMBERS
from conftest import assert_one_line_error, record, replay, run_cli
from test_divergence import diverged_at, edit_one
from traceedit import nth_event, rehash, rewrite_events


def _manifest_edit(trace, change) -> None:
    path = os.path.join(trace, "manifest.json")
    with open(path) as f:
        m = json.load(f)
    change(m)
    with open(path, "w") as f:
        json.dump(m, f)
    rehash(trace)


def test_a_32bit_syscall_is_never_run_while_recording(programs, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    proc = record(tmp_path / "t", programs["int80_unlink"], victim)
    assert_one_line_error(proc, 2, "i386 (int $0x80) syscall 10 (unlink)", "it was not run")
    assert victim.read_text() == "keep me"


def test_replay_never_runs_a_32bit_syscall(programs, tmp_path):
    """The program unlinks through int $0x80 only if getpid() says 1: a trace edited to say so
    steers the replay there. The filter traps it (i386 10 is unlink, x86-64 10 mprotect)."""
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    trace = tmp_path / "t"
    proc = record(trace, programs["int80_unlink"], victim, "if-pid-1")
    assert proc.returncode == 0, proc.stderr
    # getpid is buffered: its record in its flush says 1 now
    flush = nth_event(trace, lambda e: e.kind == E.FLUSH and any(
        r.nr == NUMBERS["getpid"] for r in E.buffered_syscalls(e)))

    def say_pid_1(ev):
        recs = E.buffered_syscalls(ev)
        for rec in recs:
            if rec.nr == NUMBERS["getpid"]:
                rec.result = 1
        ev.extra = E.encode_buffered_syscalls(recs)
    edit_one(trace, flush, say_pid_1)
    proc = replay(trace)
    index, check = diverged_at(proc)
    assert check == "syscall" and index == flush.index     # made before the flush's end
    assert "syscall 10 of another ABI" in proc.stdout.decode()
    assert victim.read_text() == "keep me"


def test_the_checkpoint_gadget_chooses_nothing(recorded_hello, tmp_path):
    """Checkpoints still name the recorder's injection site; replay injects through its own
    code only, so pointing it anywhere changes nothing."""
    for name in sorted(os.listdir(recorded_hello / "checkpoints")):
        path = recorded_hello / "checkpoints" / name
        ckpt = json.loads(path.read_text())
        ckpt["gadget"] = 0x401000
        path.write_text(json.dumps(ckpt, sort_keys=True) + "\n")
    rehash(recorded_hello)
    proc = replay(recorded_hello)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert "1 checkpoints compared" in proc.stdout.decode()


def test_an_injected_syscall_that_arrives_changed_is_refused(recorded_hello):
    """The injector's stop check: a site whose code sets another syscall number is caught at
    the seccomp stop, before that syscall runs."""
    from rrverify.checkpoints.inject import Injector, TraceeMemory
    from rrverify.checkpoints.restore import restore
    from rrverify.errors import InjectionRefused
    from rrverify.trace import Trace
    from rrverify._native import lib
    trace = Trace(str(recorded_hello))
    pid = restore(trace, trace.checkpoint(0), cpu=os.sched_getaffinity(0).pop())
    mem = TraceeMemory(pid)
    try:
        site = trace.checkpoint(0)["regs"]["rip"]
        mem.write(site, b"\xb8\x02\x00\x00\x00\x0f\x05")    # mov $2 (open), %eax; syscall
        with pytest.raises(InjectionRefused, match="arrived as syscall 2"):
            Injector(pid, site, mem).syscall("getpid")
    finally:
        mem.close()
        lib.rrv_kill(pid)


def test_a_mid_trace_sigkill_exit_is_not_verified(programs, tmp_path):
    """An incomplete trace whose middle event became "killed by SIGKILL": replay used to stop
    there and say verified, though the events after it were never checked."""
    trace = tmp_path / "t"    # traced writes: --no-syscallbuf
    assert run_cli("record", "--no-syscallbuf", "-o", trace, "--", programs["fileio"],
                   tmp_path).returncode == 0
    victim = nth_event(trace, lambda e: e.kind == E.SYSCALL and e.nr == NUMBERS["write"], 3)

    def to_sigkill_exit(ev):
        if ev.index == victim.index:
            return E.Event(ev.index, E.EXIT, 0, ev.tid, 9, 0, 0, 0, dict.fromkeys(E.REG_NAMES, 0))
        return ev
    rewrite_events(trace, to_sigkill_exit)
    _manifest_edit(trace, lambda m: m.update(complete=False))
    proc = replay(trace)
    assert_one_line_error(proc, 2, f"event {victim.index}", "after the tracee's exit")


def test_the_final_state_is_compared(programs, tmp_path):
    """A short run takes no periodic checkpoint; the one before its exit still compares what
    it read, which nothing else after the read shows."""
    trace = tmp_path / "t"
    src = tmp_path / "data"
    src.write_text("the recorded bytes")
    assert run_cli("record", "--no-syscallbuf", "-o", trace, "--", programs["read_then_exit"],
                   src).returncode == 0        # a traced read (a buffered one: test_syscallbuf.py)
    proc = replay(trace)
    assert proc.returncode == 0 and "1 checkpoints compared" in proc.stdout.decode()
    read = nth_event(trace, lambda e: e.kind == E.SYSCALL and e.nr == NUMBERS["read"]
                     and e.writes and e.writes[0].data.startswith(b"the recorded"))
    edit_one(trace, read, lambda ev: setattr(ev.writes[0], "data", b"THE" + ev.writes[0].data[3:]))
    index, check = diverged_at(replay(trace))
    exit_group = nth_event(trace, lambda e: e.kind == E.SYSCALL and e.nr == NUMBERS["exit_group"])
    assert (index, check) == (exit_group.index, "checkpoint")
    assert "memory" in replay(trace).stdout.decode()


def test_an_exit_without_its_final_checkpoint_is_a_trace_error(recorded_hello):
    index = recorded_hello / "checkpoints.jsonl"
    lines = index.read_text().splitlines(keepends=True)
    index.write_text("".join(lines[:-1]))
    rehash(recorded_hello)
    proc = replay(recorded_hello)
    assert_one_line_error(proc, 2, "has no checkpoint", "final state")


@pytest.fixture
def restored_hello(recorded_hello):
    """A process restored from the hello trace's first checkpoint, and an injector into it."""
    from rrverify.checkpoints.inject import TraceeMemory, VerifierSite
    from rrverify.checkpoints.restore import restore
    from rrverify.trace import Trace
    from rrverify._native import lib
    trace = Trace(str(recorded_hello))
    pid = restore(trace, trace.checkpoint(0), cpu=os.sched_getaffinity(0).pop())
    mem = TraceeMemory(pid)
    try:
        with VerifierSite(pid, mem) as injector:
            injector.map_scratch()
            yield pid, mem, injector
            injector.unmap_scratch()
    finally:
        mem.close()
        lib.rrv_kill(pid)


def test_a_restored_process_holds_no_descriptor_of_the_verifier(restored_hello):
    pid, _, _ = restored_hello
    fds = sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))
    assert fds == [0, 1, 2]
    assert all(os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null" for fd in fds)


def test_a_syscall_that_slipped_through_reaches_no_file(restored_hello, tmp_path):
    """Defense in depth: even a real open, creat or unlink run inside a replayed process (as a
    bug in the tracer's checks would let one run) is refused by its Landlock domain."""
    from rrverify.checkpoints import stub
    pid, mem, injector = restored_hello
    secret = tmp_path / "secret"
    secret.write_text("the verifier's")
    eacces = -13
    for flags in (0, 0o1101):       # O_RDONLY; O_WRONLY|O_CREAT|O_TRUNC
        mem.write(stub.SCRATCH, os.fsencode(secret) + b"\0")
        assert injector.syscall("openat", -100, stub.SCRATCH, flags, 0o644, check=False) == eacces
    mem.write(stub.SCRATCH, os.fsencode(secret) + b"\0")
    assert injector.syscall("unlinkat", -100, stub.SCRATCH, 0, check=False) == eacces
    assert secret.read_text() == "the verifier's"
    mem.write(stub.SCRATCH, b"/usr/bin/true\0")
    assert injector.syscall("openat", -100, stub.SCRATCH, 0, check=False) == eacces


def test_a_replayed_process_has_no_network(restored_hello):
    """Its own network namespace: no route anywhere, not even to this machine's loopback."""
    import socket
    import struct
    from rrverify.checkpoints import stub
    pid, mem, injector = restored_hello
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    fd = injector.syscall("socket", socket.AF_INET, socket.SOCK_DGRAM, 0)
    addr = struct.pack("<HH4s8x", socket.AF_INET, socket.htons(9), socket.inet_aton("127.0.0.1"))
    mem.write(stub.SCRATCH, addr + b"x")
    sent = injector.syscall("sendto", fd, stub.SCRATCH + len(addr), 1, 0, stub.SCRATCH, len(addr),
                            check=False)
    assert sent == -101        # ENETUNREACH: the namespace's loopback is down


def test_a_checkpoint_whose_fpu_digest_is_not_its_xsave_areas_is_refused(recorded_hello):
    path = recorded_hello / "checkpoints" / "000001.json"
    ckpt = json.loads(path.read_text())
    ckpt["fpu_digest"] ^= 1
    path.write_text(json.dumps(ckpt, sort_keys=True) + "\n")
    rehash(recorded_hello)
    proc = replay(recorded_hello)
    assert_one_line_error(proc, 2, "checkpoint 1 is corrupted", "fpu_digest is not that of its XSAVE")


def test_replay_reads_what_verify_restores(programs, tmp_path):
    """A damaged page blob that only a later checkpoint names: verify's segment that restores
    that checkpoint fails on it, so whole-trace replay, which only compares with it, must too."""
    from test_cluster import _chunk_users, _last_chunk
    trace = tmp_path / "t"
    proc = run_cli("record", "-o", trace, "--checkpoint-every", 40, "--", programs["fileio"],
                   tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert replay(trace).returncode == 0
    chunk = _last_chunk(trace)
    assert 0 not in _chunk_users(trace, chunk)       # checkpoint 0, the one replay restores
    (trace / "blobs" / chunk.hex()[:2] / f"{chunk.hex()}.zst").unlink()
    assert_one_line_error(replay(trace), 2, chunk.hex(), "missing")
