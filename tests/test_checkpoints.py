"""Checkpoints: taken every N events, stored once per distinct page, restored into fresh
processes from the trace alone; every segment verifies, and a replay from any checkpoint
reaches the same end as a replay from the start."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from rrverify import events as E
from rrverify.checkpoints.pages import PAGE, ZERO
from rrverify.replayer.replay import replay
from rrverify.trace import Trace
from conftest import record, run_cli

PY = "/usr/bin/python3"


def test_checkpoints_every_n_events_with_changing_memory(longrun):
    t = Trace(str(longrun))
    cps = t.checkpoints
    assert len(cps) >= 16
    assert cps[0]["event"] == 1            # right after the exec
    gaps = {b["event"] - a["event"] for a, b in zip(cps, cps[1:])}
    assert max(gaps) <= 501                # every 500 events (+1: one postponed by a signal)
    pagemaps = [t.blob(t.checkpoint(k)["pagemap_blob"]) for k in range(len(cps))]
    assert all(a != b for a, b in zip(pagemaps, pagemaps[1:]))   # memory changed each time


def test_page_store_holds_each_page_once_and_is_small(longrun):
    t = Trace(str(longrun))
    stats = t.manifest["stats"]
    distinct = set()
    covered = 0
    for k in range(len(t.checkpoints)):
        pm = t.blob(t.checkpoint(k)["pagemap_blob"])
        pages = {pm[i:i + 16] for i in range(0, len(pm), 16)} - {ZERO}
        distinct |= pages
        covered += len(pm) // 16 * PAGE
    assert stats["stored_pages"] <= len(distinct)
    chunk_bytes = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in
                      os.walk(os.path.join(longrun, "blobs")) for f in fs)
    assert chunk_bytes <= 0.25 * covered


def test_the_manifest_says_where_the_recordings_cpu_time_went(longrun):
    """Every part is counted, and each thread's within the recording's wall time."""
    stats = Trace(str(longrun)).manifest["stats"]
    cpu = stats["cpu_seconds"]
    assert set(cpu) == {"processes", "tracer", "checkpoint_finisher", "frame_writer"}
    assert all(v > 0 for v in cpu.values()), cpu
    assert cpu["processes"] >= 0.01          # a python3 that ran 3000 iterations
    # (each thread's last work, the final frames and pages, may follow the wall time's end)
    assert all(cpu[k] <= stats["seconds"] + 0.1 for k in cpu if k != "processes"), stats


def test_every_checkpoint_replays_to_the_same_end(longrun):
    t = Trace(str(longrun))
    full = replay(t)
    assert full.status == "verified" and full.exit_status == 0
    assert full.checkpoints_compared == len(t.checkpoints) - 1
    for k in range(len(t.checkpoints)):
        res = replay(t, start=k)
        assert res.status == "verified", (k, res.divergence)
        assert res.exit_status == full.exit_status
        assert res.end_event == full.end_event == t.event_count


def test_segment_replay_from_the_cli(longrun):
    proc = run_cli("replay", longrun, "--segment", 3)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert b"verified: segment 3 (events " in proc.stdout
    assert b"1 checkpoints compared" in proc.stdout
    bad = run_cli("replay", longrun, "--segment", 999)
    assert bad.returncode == 2 and b"--segment 999" in bad.stderr


def test_replay_never_needs_the_recording_machines_files(programs, tmp_path):
    """The program and the file it maps are deleted after recording: verification passes."""
    work = tmp_path / "work"
    work.mkdir()
    exe = work / "mmap_file"
    shutil.copy(programs["mmap_file"], exe)
    trace = tmp_path / "t"
    proc = run_cli("record", "-o", trace, "--checkpoint-every", 20, "--", exe, work)
    assert proc.returncode == 0, proc.stderr
    files = [json.loads(l)["path"] for l in (trace / "files.jsonl").read_text().splitlines()]
    assert str(exe) in files
    shutil.rmtree(work)
    proc = run_cli("replay", trace)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_cli(trace, "--workers", 2)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mid_trace_exec_restores_its_checkpoint(programs, tmp_path):
    """A shell that exec's another program: replay restores the checkpoint after the exec."""
    trace = tmp_path / "t"
    proc = record(trace, "/bin/sh", "-c", f"exec {programs['hello']}")
    assert proc.returncode == 0 and proc.stdout == b"hello, world\n", proc.stderr
    t = Trace(str(trace))
    execs = [ev.index for ev in t.events() if ev.kind == 4]
    assert len(execs) == 2
    assert [c["event"] for c in t.checkpoints][:2] == [1, execs[1] + 1]
    assert run_cli("replay", trace).returncode == 0


def test_a_restored_process_has_the_kernels_trap_state(programs, tmp_path):
    """The kernel writes its per-thread trap state (trapno 13 once an rdtsc has trapped) into
    every signal frame: a process restored mid-run must have it too, or a segment's final
    stack page differs where a later frame was written."""
    proc = run_cli("record", "-o", tmp_path / "t2", "--checkpoint-every", 50, "--",
                   programs["sigjmp_timer"])
    assert proc.returncode == 0 and proc.stdout == b"hits 50\n", proc.stderr
    t = Trace(str(tmp_path / "t2"))
    assert len(t.checkpoints) >= 5
    assert {t.checkpoint(k)["trap"] for k in range(1, len(t.checkpoints))} == {"rdtsc"}
    for k in range(len(t.checkpoints)):
        res = replay(t, start=k, end=k + 1 if k + 1 < len(t.checkpoints) else None)
        assert res.status == "verified", (k, res.divergence)


@pytest.mark.parametrize("cmd", [["/bin/ls", "/"], ["file_mappings", "DIR"], ["stack_limit"],
                                 ["huge_sparse_map", "DIR"]])
def test_a_checkpoint_at_every_event_verifies_every_segment(cmd, programs, tmp_path):
    """Checkpoints taken between ld.so's mapping of a library and its fix-up of the pages past
    the file's end (unreadable: they fault) must restore as they were; a file mapping restored
    mid-run must still fault past the end, go back to the file on MADV_DONTNEED...; a process
    restored after lowering its own RLIMIT_STACK must have that limit."""
    argv = [programs.get(a, a) for a in cmd]
    argv = [str(tmp_path) if a == "DIR" else a for a in argv]
    proc = run_cli("record", "-o", tmp_path / "t", "--checkpoint-every", 1, "--", *argv)
    assert proc.returncode == 0, proc.stderr
    t = Trace(str(tmp_path / "t"))
    assert len(t.checkpoints) > 30
    for k in range(len(t.checkpoints)):
        res = replay(t, start=k, end=k + 1 if k + 1 < len(t.checkpoints) else None)
        assert res.status == "verified", (k, res.divergence)


RESTORE_FROM_ELSEWHERE = """
import faulthandler, os, resource, signal, sys
faulthandler.enable()                       # an alternate signal stack, as in a Ray worker
os.umask(0o077)
os.nice(1)
signal.signal(signal.SIGPIPE, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
from rrverify.trace import Trace
from rrverify.replayer.replay import replay
t = Trace(sys.argv[1])
n = len(t.checkpoints)
bad = [k for k in range(n) if replay(t, start=k, end=k + 1 if k + 1 < n else None).status != "verified"]
print("diverged:", bad)
"""


def test_a_restored_process_is_its_checkpoint_whoever_restores_it(programs, tmp_path):
    """A restore made by a process with its own alternate signal stack, umask, nice value,
    ignored and blocked signals (a Ray worker has some of these) gives the same process."""
    import subprocess
    import sys
    proc = run_cli("record", "-o", tmp_path / "t", "--checkpoint-every", 50, "--",
                   programs["sigjmp_timer"])
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run([sys.executable, "-c", RESTORE_FROM_ELSEWHERE, str(tmp_path / "t")],
                         capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "diverged: []", out.stdout + out.stderr


def test_every_recording_core_s_apic_id_is_tolerated():
    """Recorded processes run on every CPU (--tracee-cpus all): a cpuid result saved in memory
    holds whichever core's APIC id the process ran on, so comparison tolerates each recorded
    core's id against this one's, not only the tracer's."""
    from rrverify import host
    from rrverify.checkpoints.compare import cpu_identity, identity_pairs
    here = cpu_identity({"0x1.0": list(host.cpuid(1)), "0xb.0": list(host.cpuid(0xb, 0))})
    other = bytes([here[0] ^ 0x5a]) + here[1:]
    recorded = {"cpuid": {"0x1.0": list(host.cpuid(1)), "0xb.0": list(host.cpuid(0xb, 0))}}
    assert identity_pairs(recorded) == set()
    recorded["core_identities"] = [here.hex(), other.hex()]
    assert identity_pairs(recorded) == {(other[0], here[0])}
    cpus = os.sched_getaffinity(0)
    idents = host.describe(cpus)["core_identities"]
    assert 1 <= len(idents) <= len(cpus) and all(len(bytes.fromhex(i)) == 5 for i in idents)
    assert os.sched_getaffinity(0) == cpus       # measured core by core, then put back


# -- the checkpoint finisher: the second half of every checkpoint, off the tracer's CPU -------

class FakeSnapshot:
    def __init__(self, n: int, size: int):
        self.n, self.bytes = n, size


def test_the_finisher_writes_checkpoints_in_order_within_its_byte_budget(monkeypatch):
    import threading
    import time
    from rrverify.checkpoints import finisher as F
    finished, pending_seen = [], []

    def slow_finish(snap, writer, pages):
        time.sleep(0.01)
        finished.append(snap.n)

    monkeypatch.setattr(F, "finish", slow_finish)
    fin = F.CheckpointFinisher(None, None, max_pending_bytes=250)
    for n in range(8):
        fin.submit(FakeSnapshot(n, 100))
        pending_seen.append(fin._pending_bytes)
    fin.drain()
    assert finished == list(range(8))
    assert max(pending_seen) <= 250            # a third snapshot of 100 bytes waited for room
    assert fin.close() is None
    assert not any(t.name == "rrverify-checkpoint-finisher" for t in threading.enumerate())


def test_a_failed_checkpoint_stops_later_ones_and_reaches_the_recorder(monkeypatch):
    from rrverify.checkpoints import finisher as F
    finished = []

    def finish(snap, writer, pages):
        if snap.n == 1:
            raise OSError(28, "No space left on device")
        finished.append(snap.n)

    monkeypatch.setattr(F, "finish", finish)
    fin = F.CheckpointFinisher(None, None)
    for n in range(3):
        fin.submit(FakeSnapshot(n, 10))
    with pytest.raises(OSError, match="No space"):
        fin.drain()
    with pytest.raises(OSError, match="No space"):
        fin.submit(FakeSnapshot(3, 10))
    assert finished == [0]      # no checkpoint after the failed one: it may name its pages
    assert isinstance(fin.close(), OSError)


def test_background_threads_leave_the_tracer_cpu_even_after_the_tracer_pinned_itself():
    """The recorder pins its own thread first; a thread it starts then inherits that one CPU,
    so the CPUs to move to come from the process's original affinity."""
    import threading
    from rrverify.tracee import ORIGINAL_AFFINITY, keep_off_cpu
    if len(ORIGINAL_AFFINITY) < 2:
        pytest.skip("one CPU: nowhere else to go")
    cpu = max(ORIGINAL_AFFINITY)
    seen = []
    t = threading.Thread(target=lambda: (keep_off_cpu(cpu), seen.append(os.sched_getaffinity(0))))
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        t.start()
        t.join()
    finally:
        os.sched_setaffinity(0, before)
    assert seen == [set(ORIGINAL_AFFINITY) - {cpu}]


def test_untouched_anonymous_pages_are_not_read_and_touched_ones_are():
    """A checkpoint reads a private anonymous mapping's touched pages only: pagemap says which
    are neither present nor swapped (they read as zeros). A page written, even with zeros, is
    read."""
    import ctypes
    import mmap
    from rrverify.checkpoints.capture import untouched_page_runs
    from rrverify.checkpoints.inject import TraceeMemory
    m = mmap.mmap(-1, 16 * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        m[3 * PAGE] = 1
        m[7 * PAGE:8 * PAGE] = bytes(PAGE)        # written with zeros: still touched
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
        mem = TraceeMemory(os.getpid())
        try:
            runs = list(untouched_page_runs(mem, addr, 16))
        finally:
            mem.close()
        assert runs == [(0, 3, True), (3, 1, False), (4, 3, True), (7, 1, False),
                        (8, 8, True)]
    finally:
        m.close()


def test_a_reserved_heap_is_read_neither_by_checkpoints_nor_by_comparisons(programs, memory_reads,
                                                                           tmp_path):
    """reserve.c maps 256 MiB and touches 17 pages of it: its checkpoints, and the comparisons
    that replay makes with them, read those pages, not the 256 MiB (before pagemap told them
    apart, each checkpoint of such a process read all of it)."""
    from rrverify.recorder.record import record as record_in_process
    read = memory_reads
    trace = str(tmp_path / "t")
    res = record_in_process([programs["reserve"]], trace, checkpoint_every=1000)
    assert res.complete and res.checkpoints >= 4
    assert read[0] < 64 << 20, read[0]
    read[0] = 0
    assert replay(Trace(trace)).status == "verified"
    assert read[0] < 64 << 20, read[0]


def test_a_page_replay_leaves_untouched_differs_from_the_recorded_one(programs, tmp_path):
    """The page reserve.c read() into is recorded with the file's bytes. Move that read's write
    one page on: replay leaves the page untouched, and the comparison, which reads no untouched
    page, still finds it differs (it is the first difference: the other page, written instead,
    comes after it)."""
    from rrverify import events as E
    from rrverify.recorder.syscalls import NUMBERS
    from traceedit import nth_event, rewrite_events
    trace = tmp_path / "t"
    proc = run_cli("record", "--no-syscallbuf", "--checkpoint-every", 1000, "-o", trace, "--",
                   programs["reserve"])
    assert proc.returncode == 0, proc.stderr.decode()
    target = nth_event(trace, lambda e: e.kind == E.SYSCALL and e.nr == NUMBERS["read"] and
                       e.regs["rdx"] == 4096 and e.writes and e.writes[0].length > 0)
    page = target.writes[0].addr

    def move(ev):
        if ev.index == target.index:
            w = ev.writes[0]
            ev.writes[0] = E.Write(w.addr + PAGE, w.length, w.data, w.blob)
        return ev
    rewrite_events(trace, move)
    out = tmp_path / "r.json"
    proc = run_cli("replay", trace, "--json", out)
    assert proc.returncode == 1, proc.stdout.decode() + proc.stderr.decode()
    report = json.loads(out.read_text())
    text = json.dumps(report)
    assert '"what": "memory"' in text, text[:2000]
    assert f'"first_difference": "{page:#x}"' in text, text[:2000]


def test_a_snapshot_that_holds_too_much_is_digested_as_it_is_read(programs, monkeypatch,
                                                                   tmp_path):
    """Past MAX_HELD_BYTES of memory read, the recorder digests what a snapshot holds rather
    than copy a process whole: with the bound at 64 KiB every snapshot takes that path, and the
    trace still verifies, every checkpoint compared."""
    from rrverify.checkpoints import capture
    from rrverify.recorder.record import record as record_in_process
    from rrverify.recorder import record as record_module
    digested = []
    real = record_module.Recorder._digest_held
    monkeypatch.setattr(capture, "MAX_HELD_BYTES", 64 << 10)
    monkeypatch.setattr(record_module.Recorder, "_digest_held",
                        lambda self, memory, unchanged: (digested.append(memory.bytes),
                                                         real(self, memory, unchanged)))
    trace = str(tmp_path / "t")
    res = record_in_process([programs["reserve"], "/etc/passwd"], trace, checkpoint_every=1000)
    assert res.complete and res.checkpoints >= 4
    assert len(digested) >= res.checkpoints and min(digested) > 64 << 10
    assert replay(Trace(trace)).status == "verified"


def test_a_checkpoint_that_cannot_be_written_ends_the_trace_incomplete(programs, monkeypatch,
                                                                       tmp_path):
    """A failure on the finisher's thread (here, the third checkpoint) reaches the recording:
    one line naming it, and a trace marked incomplete, never a complete trace missing
    checkpoints."""
    from rrverify.checkpoints import finisher
    from rrverify.errors import NativeError
    from rrverify.recorder.record import record as record_in_process
    calls = []
    real = finisher.finish

    def failing(snap, writer, pages):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated")
        return real(snap, writer, pages)
    monkeypatch.setattr(finisher, "finish", failing)
    trace = str(tmp_path / "t")
    with pytest.raises(NativeError, match=r"record: recorder error: a checkpoint could not be "
                                          r"written \(RuntimeError: simulated\); trace left "
                                          r"incomplete"):
        record_in_process([programs["reserve"], "/etc/passwd"], trace, checkpoint_every=1000)
    t = Trace(trace)
    assert t.manifest["complete"] is False
    assert "a checkpoint could not be written" in t.manifest["end"]["reason"]
    assert len(t.checkpoints) == 2


_READ_ME = r"""
import ctypes, mmap, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_long]
hidden = libc.mmap(None, 3 * 4096, 3, 0x22, -1, 0)          # written, then PROT_NONE
ctypes.memset(hidden, 0x5a, 3 * 4096)
libc.mprotect(ctypes.c_void_p(hidden), 3 * 4096, 0)
sparse = libc.mmap(None, 64 * 4096, 3, 0x22, -1, 0)         # two pages touched of 64
ctypes.memset(sparse + 5 * 4096, 1, 4096)
ctypes.memset(sparse + 40 * 4096, 2, 4096)
fd = os.open(sys.argv[1], os.O_RDONLY)
short = libc.mmap(None, 2 * 4096, 1, 2, fd, 0)               # a 100-byte file, two pages
print(hidden, sparse, short, flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
"""


def test_the_native_reader_reads_what_proc_mem_holds(tmp_path):
    """capture.read_memory (checkpoints/memory_reader.c) against /proc/PID/mem read page by
    page, on a stopped process with a PROT_NONE region that holds data (process_vm_readv
    refuses it), a sparse private region (untouched pages are zero runs, not read) and a file
    mapping whose second page lies past the file's end (unreadable, zeros)."""
    import subprocess
    import sys
    from rrverify.checkpoints.capture import read_memory
    from rrverify.checkpoints.inject import TraceeMemory
    from rrverify.exec_image import read_maps
    short_file = tmp_path / "short"
    short_file.write_bytes(b"x" * 100)
    child = subprocess.Popen([sys.executable, "-c", _READ_ME, str(short_file)],
                             stdout=subprocess.PIPE)
    try:
        hidden, sparse, short = map(int, child.stdout.readline().split())
        os.waitpid(child.pid, os.WUNTRACED)
        mem = TraceeMemory(child.pid)
        try:
            maps = read_maps(child.pid)
            snap = read_memory(mem, maps)
            pages_of = {}        # address -> (kind, bytes or None, unreadable)
            for run in snap.runs:
                if run[0] == "zero":
                    continue
                _, addr, data, unreadable, *_ = run
                for i in range(len(data) // PAGE):
                    pages_of[addr + i * PAGE] = (data[i * PAGE:(i + 1) * PAGE], i in unreadable)
            for r in maps:
                if r["path"] in ("[vvar]", "[vvar_vclock]", "[vsyscall]"):
                    continue
                for addr in range(r["start"], r["end"], PAGE):
                    want = mem.read(addr, PAGE)
                    if addr not in pages_of:      # a zero run: an untouched page
                        assert want in (b"", bytes(PAGE)), hex(addr)
                        continue
                    data, unreadable = pages_of[addr]
                    assert unreadable == (len(want) != PAGE), hex(addr)
                    assert data == (want if len(want) == PAGE else bytes(PAGE)), hex(addr)
        finally:
            mem.close()
        assert pages_of[hidden][0] == b"\x5a" * PAGE           # through /proc/PID/mem
        assert sparse + 5 * PAGE in pages_of and sparse + 6 * PAGE not in pages_of
        assert pages_of[short + PAGE][1] and not pages_of[short][1]
    finally:
        child.kill()
        child.wait()


def test_a_tracee_killed_while_its_checkpoint_is_read_ends_its_stream_there(programs,
                                                                              monkeypatch,
                                                                              tmp_path):
    """SIGKILL from outside while a checkpoint's memory is read: /proc/PID/stat then no longer
    shows the process in its stop, so that checkpoint is not written (its memory may be
    gone), the stream ends with the death, and the trace verifies up to there."""
    import signal
    import time
    from rrverify.checkpoints import capture
    from rrverify.recorder.record import record as record_in_process
    real, reads = capture.Snapshot.read, []

    def killing_read(self, *args, **kw):
        reads.append(self.pid)
        if len(reads) == 3:
            os.kill(self.pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while capture.still_stopped(self.pid) and time.monotonic() < deadline:
                time.sleep(0.001)
        return real(self, *args, **kw)
    monkeypatch.setattr(capture.Snapshot, "read", killing_read)
    trace = str(tmp_path / "t")
    res = record_in_process([programs["syscall_loop"], "300000", "0"], trace,
                            checkpoint_every=50000)
    assert not res.complete and "killed by SIGKILL from outside" in res.reason
    assert len(reads) == 3 and res.checkpoints == 2
    assert replay(Trace(trace)).status == "verified"


def test_a_checkpoint_after_an_exec_has_the_signal_state_injection_would_read(programs,
                                                                            monkeypatch,
                                                                            tmp_path):
    """Right after an exec nothing is injected: the signal state and brk follow from the
    exec's rules (inject.exec_signal_state). The same recordings with the state read by
    injection instead hold the same checkpoints' signals and layout: signals ignored across
    the exec, a mask kept, a handler the exec reset, a shell's `trap ''`; and an alternate
    stack set before the exec, whose SS_AUTODISARM the exec keeps (so that checkpoint is read
    by injection, and replay puts the flag back)."""
    from rrverify.checkpoints import capture
    from rrverify.recorder.record import record as record_in_process
    cmds = [[programs["exec_keeps_signals"]],
            ["/bin/sh", "-c", "trap '' INT QUIT; exec env true"]]

    def exec_states(trace_dir):
        t = Trace(trace_dir)
        cps = [t.checkpoint(c["id"]) for c in t.checkpoints]
        return [(c["event"], c["signals"], c["mm"]) for c in cps if c["event"] > 0]

    derived, used = [], []
    real = capture.exec_signal_state
    monkeypatch.setattr(capture, "exec_signal_state",
                        lambda pid: used.append(pid) or real(pid))
    for n, cmd in enumerate(cmds):
        assert record_in_process(cmd, str(tmp_path / f"d{n}")).complete
        derived.append(exec_states(str(tmp_path / f"d{n}")))
    assert len(used) >= 4
    monkeypatch.setattr(capture, "exec_signal_state", lambda pid: None)   # inject instead
    for n, cmd in enumerate(cmds):
        assert record_in_process(cmd, str(tmp_path / f"i{n}")).complete
        assert exec_states(str(tmp_path / f"i{n}")) == derived[n], cmd
    ignored = {a[0] for _, s, _ in derived[0] for a in s["actions"]}
    assert 10 in ignored                                                      # SIGUSR1
    autodisarm = [0, -2**31 | 2, 0]              # SS_AUTODISARM | SS_DISABLE, as an int
    assert [s["altstack"] for _, s, _ in derived[0]][:2] == [[0, 2, 0], autodisarm]
    assert {2, 3} <= {a[0] for _, s, _ in derived[1] for a in s["actions"]}  # INT, QUIT
    for n in range(len(cmds)):
        assert replay(Trace(str(tmp_path / f"d{n}"))).status == "verified"


def test_pages_are_named_once_and_again_only_where_they_changed():
    """capture.name_runs (checkpoints/unchanged_pages.c): every run a checkpoint read named in
    one call; a page whose bytes are unchanged since the process's previous checkpoint keeps
    its name without being hashed, a changed one is named afresh; and names are SHA-256/16,
    zeros for a zero page, whatever the table holds."""
    from rrverify.checkpoints.capture import UnchangedPages, name_runs
    from rrverify.checkpoints.pages import page_digest
    one = bytearray(os.urandom(PAGE * 3))
    one[PAGE:2 * PAGE] = bytes(PAGE)
    two = bytearray(os.urandom(PAGE * 2))
    table = UnchangedPages()

    def expected(data):
        return b"".join(page_digest(bytes(data[i:i + PAGE])) for i in range(0, len(data), PAGE))

    first = name_runs([(0x10000, one), (0x7f0000000000, two)], table)
    assert first == [(expected(one), [0, 1, 2]), (expected(two), [0, 1])]
    assert first[0][0][16:32] == ZERO
    one[2 * PAGE] ^= 1
    two[0:PAGE] = one[0:PAGE]                      # another address's bytes: named here anew
    again = name_runs([(0x10000, one), (0x7f0000000000, two)], table)
    assert again == [(expected(one), [2]), (expected(two), [0])]
    assert name_runs([(0x10000, one)], None) == [(expected(one), [0, 1, 2])]
    # Thousands of addresses: the table grows, and keeps every one.
    big = os.urandom(PAGE * 3000)
    assert name_runs([(0x200000, big)], table)[0][1] == list(range(3000))
    assert name_runs([(0x200000, big)], table) == [(expected(big), [])]


def test_blobs_stored_many_at_a_time_are_whole_and_once(tmp_path):
    """TraceWriter.put_blobs (rrverify/native/blob_files.c): SHA-256 names, one file per
    distinct blob, each whole (zstd, checked), none left half-written; a failure to write is
    the trace's write failure, in one line."""
    import threading
    import zstandard
    from rrverify.errors import TraceError
    from rrverify.trace import TraceWriter, blob_path
    from rrverify.digests import digest
    writer = TraceWriter(str(tmp_path / "t"), {"command": ["x"]})
    datas = [os.urandom(5000), b"\0" * 70000, b"same", b"same"]
    names = writer.put_blobs(datas)
    assert names == [digest(d) for d in datas] and names[2] == names[3]
    for data, name in zip(datas, names):
        with open(blob_path(writer.path, name), "rb") as f:
            assert zstandard.ZstdDecompressor().decompress(f.read()) == data
    many = [os.urandom(3000) for _ in range(40)]       # two threads storing the same blobs
    threads = [threading.Thread(target=writer.put_blobs, args=(many,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    left = [n for _, _, files in os.walk(tmp_path) for n in files if ".tmp" in n]
    assert not left and all(os.path.exists(blob_path(writer.path, digest(d))) for d in many)
    # Where the blob's directory should be, a file: it cannot be written.
    new = next(d for d in (os.urandom(8) for _ in range(10000))
               if not os.path.exists(os.path.dirname(blob_path(writer.path, digest(d)))))
    with open(os.path.dirname(blob_path(writer.path, digest(new))), "w"):
        pass
    with pytest.raises(TraceError, match="cannot write the trace: not a directory"):
        writer.put_blobs([new])


def test_no_segment_starts_with_a_signal_delivered_at_a_syscall_exit(programs, tmp_path):
    """sigjmp_timer's 1 ms timer often fires while a checkpoint is read at setitimer's exit, or
    just after: such a signal is never recorded as delivered at that exit (a segment starting
    at the checkpoint could not deliver it), but at the next syscall's entry, or the checkpoint
    waits. With a checkpoint at nearly every syscall exit, every segment verifies alone."""
    from rrverify.replayer.replay import replay as replay_segment, segment_checkpoints
    trace = tmp_path / "t"
    proc = run_cli("record", "-o", trace, "--checkpoint-every", 2, "--", programs["sigjmp_timer"])
    assert proc.returncode == 0 and proc.stdout == b"hits 50\n", proc.stderr
    t = Trace(str(trace))
    assert len(t.segments) > 40
    events = {ev.index: ev for ev in t.stream(0).events()}
    for k in range(len(t.segments)):
        start, end = segment_checkpoints(t, k)
        ev = events.get(t.checkpoint(start)["event"])
        assert ev is None or ev.kind != E.SIGNAL or not ev.flags & E.EF_AT_SYSCALL_EXIT, k
        assert replay_segment(t, start=start, end=end).status == "verified", k
