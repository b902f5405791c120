"""Every process of a command is recorded and verified (issue 8), with real programs: shell
pipelines and loops, background jobs, `make -j2` running gcc, Python's subprocess, perl's
system, timeout, posix_spawn, vfork, execveat, a page shared over fork, signals between
processes, a parent killing a spinning child, orphans. Each case is recorded once; the
recording's output and exit status equal a native run's; `rrverify replay` and
`rrverify TRACE --workers 2 --json` verify it, the report holding one segment per checkpoint
with the recorded pid of its process; `info` and `dump` describe the tree."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import native, record, replay, run_cli
from rrverify import events as E
from rrverify.recorder.syscalls import NUMBERS
from rrverify.trace import Trace
from test_cluster import ray_head  # noqa: F401  (a module-scoped Ray head: one start for all)

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
ERESTARTSYS = -512
MAP_SHARED_ANONYMOUS = 0x01 | 0x20

MAKEFILE = """\
OBJS = main.o add.o mul.o sub.o
prog: $(OBJS)
\tgcc -o prog $(OBJS)
%.o: %.c
\tgcc -O1 -c $<
"""
MAKE_SOURCES = {
    "add.c": "int add(int a, int b) { return a + b; }\n",
    "mul.c": "int mul(int a, int b) { return a * b; }\n",
    "sub.c": "int sub(int a, int b) { return a - b; }\n",
    "main.c": '#include <stdio.h>\nint add(int, int), mul(int, int), sub(int, int);\n'
              'int main(void) { printf("%d\\n", sub(add(2, mul(3, 4)), 1)); return 0; }\n',
}


def real(program: str) -> str:
    return os.path.realpath(shutil.which(program))


# name: "cmd" (from the compiled programs and a scratch directory; by default the compiled
# "program" of the case's name), its exit "status", its exact "stdout", the number of
# "processes" (or "min_processes"), and where the program decides them, by process index: how
# each ended ("exits": an exit status, or the name of the signal that killed it) and what each
# executed ("execs", from the compiled programs).
CASES = {
    "pipeline": {
        "cmd": lambda p, d: ["sh", "-c", "printf 'cherry\\napple\\nbanana\\n' | tr a-z A-Z | sort"],
        "stdout": b"APPLE\nBANANA\nCHERRY\n", "processes": 4, "exits": [0, 0, 0, 0],
        "execs": lambda p: [[real("sh")], [], [real("tr")], [real("sort")]]},
    "bash_loop": {
        "cmd": lambda p, d: ["bash", "-c", "for w in cherry apple banana; do echo $w | "
                             "tr a-z A-Z; done | sort; (exit 3) & wait $!; "
                             "echo \"background job exited $?\""],
        "stdout": b"APPLE\nBANANA\nCHERRY\nbackground job exited 3\n", "min_processes": 8},
    "background_jobs": {
        "cmd": lambda p, d: ["sh", "-c", "sleep 0.1 & sleep 0.1 & wait; echo done"],
        "stdout": b"done\n", "processes": 3, "exits": [0, 0, 0]},
    "make_j2": {
        "cmd": lambda p, d: ["make", "-j2", "-s", "-C", str(d)], "native": False,
        "stdout": b"", "min_processes": 14},
    "python_subprocess": {
        "cmd": lambda p, d: [PYTHON, "-I", "-c", "import subprocess; r = subprocess.run(['sh', "
                             "'-c', 'echo out; echo err >&2; exit 5'], capture_output=True); "
                             "print(r.returncode, r.stdout, r.stderr)"],
        "stdout": b"5 b'out\\n' b'err\\n'\n", "processes": 2, "exits": [0, 5],
        "execs": lambda p: [[os.path.realpath(PYTHON)], [real("sh")]]},
    "perl_system": {
        "cmd": lambda p, d: ["perl", "-e", 'system("true"); print "ok\\n"'],
        "stdout": b"ok\n", "processes": 2, "exits": [0, 0]},
    "timeout": {
        "cmd": lambda p, d: ["timeout", "0.5", "sleep", "5"], "status": 124, "stdout": b"",
        "processes": 2, "exits": [124, "SIGTERM"],
        "execs": lambda p: [[real("timeout")], [real("sleep")]]},
    "posix_spawn": {
        "stdout": b"spawned echo\nspawn /bin/echo: 0, child exited 0\n"
                  b"spawn of a missing program: 2 (No such file or directory)\n",
        "processes": 3, "exits": [0, 0, 127],
        "execs": lambda p: [[p["posix_spawn"]], [os.path.realpath("/bin/echo")], []]},
    "vfork_write": {
        "stdout": b'global 41, stack 42, heap "parent" / "written by the vfork child", '
                  b'child exited 5\n',
        "processes": 2, "exits": [0, 5]},
    "vfork_killed": {
        "stdout": b"child killed by signal 9, killer exited 0, sum 200\n",
        "processes": 3, "exits": [0, 0, "SIGKILL"]},
    "signal_parent": {
        "stdout": b"handler ran 1 time(s) in read, which returned 7: payload; 2 time(s) in all; "
                  b"child exited 0\n",
        "processes": 2, "exits": [0, 0]},
    "kill_spinning": {
        "stdout": b"SIGKILL: child killed by signal 9\nSIGTERM: child killed by signal 15\n",
        "processes": 3, "exits": [0, "SIGKILL", "SIGTERM"]},
    "execveat": {
        "program": "execveat_true",
        "stdout": b"fexecve /bin/true: exited 0\nexecveat /bin + false: exited 1\n",
        "processes": 3, "exits": [0, 0, 1],
        "execs": lambda p: [[p["execveat_true"]], [os.path.realpath("/bin/true")],
                            [os.path.realpath("/bin/false")]]},
    "shared_anon": {
        "stdout": b"mapped\nshared value 111\n", "processes": 2, "exits": [0, 0]},
    "default_action_fork": {
        "stdout": b"parent: SIGTERM default, flags 0x4000000, full mask\n"
                  b"child: SIGTERM default, flags 0x4000000, full mask\n",
        "processes": 2, "exits": [0, 0]},
    "orphan": {
        "cmd": lambda p, d: [p["orphan"], str(d)],
        "stdout": b"parent: child exited 0, grandchild still running\n",
        "processes": 3, "exits": [0, 0, 0]},
}
# One case is verified on a Ray started by the command itself, exactly as a user runs it; the
# others join one Ray head started for the module (starting Ray costs seconds each time).
LOCAL_RAY_CASE = "pipeline"


def jsonl(path) -> list[dict]:
    """A table of the trace; [] if the recording did not get to write it."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def ended(status: int) -> str:
    """A wait status in `rrverify info`'s words."""
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"


class Recorded:
    """One case recorded, run natively, replayed and verified: the trace, the four runs, the
    verify report, the files the recording left, and the trace's tables."""

    def __init__(self, name, workdir, rec, left, nat, rep, verify, report):
        self.name, self.workdir, self.trace = name, workdir, workdir / "trace"
        self.rec, self.left, self.nat = rec, left, nat
        self.rep, self.verify, self.report = rep, verify, report
        self.processes = jsonl(self.trace / "processes.jsonl")
        self.checkpoints = jsonl(self.trace / "checkpoints.jsonl")
        manifest = self.trace / "manifest.json"
        self.summary = json.loads(manifest.read_text()).get("processes") \
            if manifest.exists() else None                  # execs, wait status

    def stream(self, process: int):
        return list(Trace(str(self.trace)).stream(process).events())

    def exits(self) -> list[str]:
        """How each process ended (its stream's exit events), by process index."""
        return [", ".join(ended(ev.nr) for ev in self.stream(p) if ev.kind == E.EXIT)
                for p in range(len(self.processes))]


def run_case(name, programs, workdir, native_dir, ray_address) -> Recorded:
    case = CASES[name]
    if name == "make_j2":
        for fname, text in {"Makefile": MAKEFILE, **MAKE_SOURCES}.items():
            (workdir / fname).write_text(text)
    trace = workdir / "trace"
    cmd = case.get("cmd", lambda p, d: [p[case.get("program", name)]])
    rec = record(trace, *cmd(programs, workdir))
    # what the command left in its directory when the recording ended
    left = {f.name: f.read_bytes() for f in workdir.iterdir() if f.is_file()}
    # natively in a directory of its own (orphan.c's grandchild writes there late)
    nat = native(*cmd(programs, native_dir)) if case.get("native", True) else None
    rep = replay(trace)
    verify, report = verify_json(trace, workdir / "report.json",
                                 None if name == LOCAL_RAY_CASE else ray_address)
    return Recorded(name, workdir, rec, left, nat, rep, verify, report)


@pytest.fixture(scope="module")
def recorded(programs, ray_head, tmp_path_factory):
    """name -> Recorded. Every case is recorded, replayed and verified once per module, two
    at a time (one records while the other waits for Ray): the slowest first."""
    address = f"127.0.0.1:{ray_head[0]}"
    pool = ThreadPoolExecutor(2)
    futures = {name: pool.submit(run_case, name, programs, tmp_path_factory.mktemp(name),
                                 tmp_path_factory.mktemp(name + "-native"), address)
               for name in sorted(CASES, key=lambda n: n not in ("make_j2", LOCAL_RAY_CASE))}
    yield lambda name: futures[name].result()
    pool.shutdown(cancel_futures=True)


def check_report(r: Recorded, report: dict) -> None:
    """The verify JSON: verified, totals that add up, one segment per checkpoint, each
    naming its process and that process's recorded pid."""
    assert report["status"] == "verified", report
    assert report["complete_trace"] is True
    totals = report["totals"]
    n = len(r.checkpoints)
    assert totals["segments"] == totals["verified"] == n
    assert totals["diverged"] == totals["error"] == totals["trace-error"] == 0
    assert totals["processes"] == len(r.processes)
    assert totals["events"] == Trace(str(r.trace)).event_count
    assert report.get("cross_process", []) == []
    segments = sorted(report["segments"], key=lambda s: s["segment"])
    assert [s["segment"] for s in segments] == list(range(n))
    for s in segments:
        process = r.checkpoints[s["segment"]]["process"]
        assert s["status"] == "verified", s
        assert (s["process"], s["pid"]) == (process, r.processes[process]["pid"]), s
    # every process is verified, from its birth (a child's first checkpoint is its event 0)
    assert {s["process"] for s in segments} == set(range(len(r.processes)))
    for p in range(1, len(r.processes)):
        assert min(c["event"] for c in r.checkpoints if c["process"] == p) == 0


def verify_json(trace, out, address=None):
    where = ("--address", address) if address else ()
    proc = run_cli(trace, "--workers", 2, "--json", out, *where)
    report = json.loads(out.read_text()) if out.exists() else None
    return proc, report


# What a case's trace must show beyond its output: the mechanism the case is about.

def _pipeline(r):
    tree = {p["index"]: p["parent"] for p in r.processes}
    assert tree == {0: None, 1: 0, 2: 0, 3: 0}       # sh forked each stage


def _make_j2(r):
    assert r.rec.stderr == b""
    for src in MAKE_SOURCES:
        assert (r.workdir / src.replace(".c", ".o")).exists()
    assert native(r.workdir / "prog").stdout == b"13\n"
    parents = [p["parent"] for p in r.processes]
    assert any(parent not in (None, 0) for parent in parents)    # children of children: gcc's


def _vfork_write(r):
    """The parent's vfork event carries what the child wrote in the memory they shared."""
    [vfork] = [ev for ev in r.stream(0) if ev.kind == E.SYSCALL and ev.nr == NUMBERS["vfork"]]
    assert vfork.result == r.processes[1]["pid"]
    assert sum(w.length for w in vfork.writes) >= 2 * 4096     # a stack/global page, the heap


def _posix_spawn(r):
    """glibc spawns with clone3(CLONE_VM|CLONE_VFORK): each spawn's event carries what its
    child wrote in the parent's memory (for the failing one, its exec's error)."""
    spawns = [ev for ev in r.stream(0) if ev.kind == E.SYSCALL and ev.nr == NUMBERS["clone3"]]
    assert [ev.result for ev in spawns] == [p["pid"] for p in r.processes[1:]]
    assert all(ev.writes for ev in spawns)
    failed = [ev for ev in r.stream(2) if ev.kind == E.SYSCALL and ev.nr == NUMBERS["execve"]]
    assert [ev.result for ev in failed] == [-2]                  # ENOENT


def _vfork_killed(r):
    """The vfork child buffered its getppid calls into its parent's buffer (the parent had
    patched that site), and was killed with records not yet flushed: the parent, resumed, flushes
    only its own (else its replay meets a flush of getppid records it never makes)."""
    child = [rec.nr for ev in r.stream(2) if ev.kind == E.FLUSH for rec in E.buffered_syscalls(ev)]
    assert child.count(NUMBERS["getppid"]) > 0
    events = r.stream(0)
    [vfork] = [ev.index for ev in events if ev.kind == E.SYSCALL and ev.nr == NUMBERS["vfork"]]
    after = [rec.nr for ev in events[vfork:] if ev.kind == E.FLUSH
             for rec in E.buffered_syscalls(ev)]
    assert NUMBERS["getpid"] in after and NUMBERS["getppid"] not in after


def _signal_parent(r):
    """The first SIGUSR1 interrupted the parent's buffered read: unwound out of the preload to
    its stub's own syscall, recorded as a traced read interrupted there (ERESTARTSYS), with the
    signal at its exit (the read restarted, SA_RESTART); the second, sent while the parent ran
    user code, was held to its next syscall's entry."""
    events = r.stream(0)
    signals = [(events[ev.index - 2].kind, events[ev.index - 1].nr, events[ev.index - 1].result,
                ev.flags) for ev in events if ev.kind == E.SIGNAL and ev.nr == signal.SIGUSR1]
    assert len(signals) == 2
    assert signals[0] == (E.UNWIND, NUMBERS["read"], ERESTARTSYS, E.EF_AT_SYSCALL_EXIT)
    assert signals[1][3] == E.EF_AT_SYSCALL_ENTRY


def _kill_spinning(r):
    """SIGTERM's default action, arriving in the child's loop, is delivered at once."""
    [term] = [ev for ev in r.stream(2) if ev.kind == E.SIGNAL]
    assert term.nr == signal.SIGTERM and term.flags & E.EF_ASYNC_FATAL


def _execveat(r):
    for p in (1, 2):
        execs = [ev for ev in r.stream(p) if ev.kind == E.SYSCALL and ev.nr == NUMBERS["execveat"]]
        assert [ev.result for ev in execs] == [0]
        assert any(ev.kind == E.EXEC for ev in r.stream(p))


def _shared_anon(r):
    """What the child wrote in the MAP_SHARED page reaches the parent as writes of one of its
    events after the fork (no syscall result carries it)."""
    events = r.stream(0)
    [page] = [ev.result for ev in events if ev.kind == E.SYSCALL and ev.nr == NUMBERS["mmap"]
              and ev.regs["r10"] & MAP_SHARED_ANONYMOUS == MAP_SHARED_ANONYMOUS]
    [fork] = [ev for ev in events if ev.kind == E.SYSCALL and ev.nr == NUMBERS["clone"]]
    assert any(w.addr <= page < w.addr + w.length
               for ev in events[fork.index:] for w in ev.writes)


def _orphan(r):
    """The grandchild outlived its parent and the first process: the recording ended after
    it had written its file."""
    assert [p["parent"] for p in r.processes] == [None, 0, 1]
    assert r.left.get("orphan.txt") == b"written by the orphaned grandchild\n"


CHECKS = {"pipeline": _pipeline, "make_j2": _make_j2, "vfork_write": _vfork_write,
          "posix_spawn": _posix_spawn, "vfork_killed": _vfork_killed,
          "signal_parent": _signal_parent,
          "kill_spinning": _kill_spinning, "execveat": _execveat, "shared_anon": _shared_anon,
          "orphan": _orphan}


@pytest.mark.parametrize("name", list(CASES))
def test_records_and_verifies(name, recorded, programs):
    case = CASES[name]
    r = recorded(name)
    assert r.rec.returncode == case.get("status", 0), r.rec.stderr.decode()
    assert r.rec.stdout == case["stdout"]
    if r.nat is not None:
        assert (r.rec.returncode, r.rec.stdout) == (r.nat.returncode, r.nat.stdout)
    if "processes" in case:
        assert len(r.processes) == case["processes"], r.processes
    else:
        assert len(r.processes) >= case["min_processes"], r.processes
    # each process's stream ends in one exit, which the manifest's summary agrees with
    exits = r.exits()
    assert exits[0] == ended(r.rec.returncode << 8)
    assert exits == [ended(s["wait_status"]) for s in r.summary]
    if "exits" in case:
        assert exits == [ended(e << 8 if isinstance(e, int) else signal.Signals[e])
                         for e in case["exits"]]
    if "execs" in case:
        assert [s["execs"] for s in r.summary] == case["execs"](programs)
    CHECKS.get(name, lambda r: None)(r)

    out = r.rep.stdout.decode() + r.rep.stderr.decode()
    assert r.rep.returncode == 0, out
    assert out.startswith(f"verified: {len(r.processes)} processes, "), out
    assert r.verify.returncode == 0, r.verify.stdout.decode() + r.verify.stderr.decode()
    check_report(r, r.report)


def test_info_shows_the_process_tree(recorded):
    """One line per process, under its parent: what it executed, how it ended, its events
    and checkpoints."""
    r = recorded("make_j2")
    info = run_cli("info", r.trace)
    assert info.returncode == 0, info.stderr.decode()
    text = info.stdout.decode()
    assert "(format v4," in text and "complete: exited with status 0" in text
    assert f"; {len(r.checkpoints)} checkpoints, so {len(r.checkpoints)} segments" in text
    depth = {}
    expected = [f"processes: {len(r.processes)}"]

    def walk(p):
        depth[p["index"]] = 0 if p["parent"] is None else depth[p["parent"]] + 1
        execs = " -> ".join(r.summary[p["index"]]["execs"]) or "(no exec)"
        expected.append(f"  {'  ' * depth[p['index']]}{p['pid']}: {execs}; "
                        f"{r.exits()[p['index']]}; {len(r.stream(p['index']))} events, "
                        f"{sum(c['process'] == p['index'] for c in r.checkpoints)} checkpoints")
        for child in r.processes:
            if child["parent"] == p["index"]:
                walk(child)
    walk(r.processes[0])
    lines = text.splitlines()
    start = lines.index(expected[0])
    assert lines[start:start + len(expected)] == expected
    assert sum(r.summary[p]["execs"] == [real("gcc")] for p in range(len(r.processes))) == 5


def test_dump_prints_each_process_under_a_header(recorded):
    r = recorded("make_j2")
    dump = run_cli("dump", r.trace)
    assert dump.returncode == 0, dump.stderr.decode()
    headers, pids = [], {}
    for line in dump.stdout.decode().splitlines():
        if line.startswith("process "):
            headers.append(line)
        elif not line.lstrip().startswith("buffered: "):    # under its flush
            pid = int(re.match(r"\s*\d+ \[(\d+)\] ", line).group(1))
            pids[pid] = pids.get(pid, 0) + 1
    expected = []
    for p in r.processes:
        parent = p["parent"]
        expected.append(f"process {p['pid']}:" if parent is None else
                        f"process {p['pid']}, child of {r.processes[parent]['pid']} "
                        f"(its event {p['parent_event']}):")
    assert headers == expected
    assert pids == {p["pid"]: len(r.stream(p["index"])) for p in r.processes}


def test_dump_pid_prints_one_process(recorded):
    r = recorded("pipeline")
    child = r.processes[2]["pid"]
    dump = run_cli("dump", r.trace, "--pid", child)
    assert dump.returncode == 0, dump.stderr.decode()
    header, *lines = dump.stdout.decode().splitlines()
    events = [l for l in lines if not l.lstrip().startswith("buffered: ")]
    assert header == f"process {child}, child of {r.processes[0]['pid']} " \
                     f"(its event {r.processes[2]['parent_event']}):"
    assert len(events) == len(r.stream(2))
    assert {int(m) for m in re.findall(r"^\s*\d+ \[(\d+)\] ", "\n".join(events), re.M)} == {child}
    assert events[-1].endswith("exit: status 0")


def test_dump_says_how_each_signal_came(recorded, programs, tmp_path):
    held = run_cli("dump", recorded("signal_parent").trace).stdout.decode()
    assert re.search(r"signal SIGUSR1 \(at syscall exit\)", held)
    assert re.search(r"signal SIGUSR1 \(held, delivered at syscall entry\)", held)
    assert re.search(r"unwind: buffered read moved out of the preload", held)
    assert record(tmp_path / "t", programs["sigpipe"]).returncode == 128 + signal.SIGPIPE
    at_exit = run_cli("dump", tmp_path / "t").stdout.decode()
    assert re.search(r"signal SIGPIPE \(at syscall exit\)", at_exit)
    fatal = run_cli("dump", recorded("kill_spinning").trace).stdout.decode()
    assert re.search(r"signal SIGTERM \(fatal, delivered at once in user code\)", fatal)
    assert "(fault)" not in held + fatal


def test_a_process_sees_the_cpus_it_would_natively(tmp_path):
    """The recorder keeps each process on its tracer thread's CPU (docs/checks.md §13.5);
    sched_getaffinity still shows them every CPU the recording may use, so nproc (and make
    -j$(nproc)) behave as natively; a process that sets its own affinity sees its own, and may
    run on another CPU (whose APIC id the manifest holds: the replay verifies)."""
    trace = tmp_path / "t"
    proc = record(trace, "/bin/sh", "-c", "nproc; taskset -c 0 nproc")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == native("/bin/sh", "-c", "nproc; taskset -c 0 nproc").stdout
    assert proc.stdout.split()[1] == b"1"
    rep = replay(trace)
    assert rep.returncode == 0 and rep.stdout.startswith(b"verified: 3 processes"), rep.stdout


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: one tracer thread")
def test_a_process_moves_at_its_exec_to_the_tracer_thread_of_another_cpu(programs, tmp_path):
    """Two children compute at once: the second, exec'ing while the first is at work, is
    handed to the other CPU's tracer thread (docs/checks.md §13.5) and runs there (its
    allowed CPUs, as /proc shows them, differ from the first's); the hand-over is invisible to
    it (every process verifies, its registers and signal mask compared at its next event).
    With --tracee-cpus tracer both stay on the one tracer's CPU."""
    def cpus(out: bytes) -> dict:
        return dict(line.split() for line in out.decode().splitlines())

    trace = tmp_path / "t"
    proc = record(trace, programs["two_busy"])
    assert proc.returncode == 0, proc.stderr.decode()
    stats = Trace(str(trace)).manifest["stats"]
    assert stats["tracer_threads"] == min(len(os.sched_getaffinity(0)), 16) >= 2
    assert stats["handed_over"] >= 1
    placed = cpus(proc.stdout)
    assert placed["first"] != placed["second"], placed
    rep = replay(trace)
    assert rep.returncode == 0 and rep.stdout.startswith(b"verified: 3 processes"), rep.stdout

    one = tmp_path / "one"
    proc = run_cli("record", "-o", one, "--tracee-cpus", "tracer", "--", programs["two_busy"])
    assert proc.returncode == 0, proc.stderr.decode()
    placed = cpus(proc.stdout)
    assert placed["first"] == placed["second"], placed
    stats = Trace(str(one)).manifest["stats"]
    assert (stats["tracer_threads"], stats["handed_over"]) == (1, 0)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: one tracer thread")
def test_a_signal_sent_while_a_process_moves_comes_at_a_recorded_point(programs, tmp_path):
    """Children sent SIGUSR1 right after their fork, while they are checkpointed and moved to
    the other tracer thread, parked with every signal blocked: each gets it once, after the
    move, where the recording sees it (a delivery while detached would run the handler
    untraced, and replay would diverge; a lost one would leave the child waiting)."""
    trace = tmp_path / "t"
    proc = record(trace, programs["signal_moved"])
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert proc.stdout == b"every child got its signal\n"
    assert Trace(str(trace)).manifest["stats"]["handed_over"] >= 1
    rep = replay(trace)
    assert rep.returncode == 0 and rep.stdout.startswith(b"verified: 8 processes"), rep.stdout


def test_recording_in_process_leaves_the_callers_cpus_as_they_were(programs, tmp_path):
    """record() runs in a larger program (a test runner, a harness): its tracer threads pin
    themselves, and the calling thread keeps the CPUs it had (a later recording started from
    it spreads over them as well)."""
    from rrverify.recorder.record import record as record_in_process
    before = os.sched_getaffinity(0)
    result = record_in_process([programs["fork_child"]], str(tmp_path / "t"))
    assert result.complete and os.sched_getaffinity(0) == before


def test_a_segment_that_ends_just_before_a_death_replay_cannot_follow_ends_at_its_checkpoint(
        programs, tmp_path):
    """With a checkpoint at every event, a child's last segment ends at the exit of its last
    syscall, right before a death replay cannot reach (SIGKILL; SIGTERM's default action in
    user code), or before a flush that such a death follows: each segment, replayed on its own,
    must stop there and compare, not run on into the death."""
    from rrverify.replayer.replay import replay as replay_segment, segment_checkpoints
    trace = tmp_path / "t"
    rec = run_cli("record", "-o", trace, "--checkpoint-every", 1, "--", programs["kill_spinning"])
    assert rec.returncode == 0, rec.stderr.decode()
    t = Trace(str(trace))
    children = {p["index"] for p in t.manifest["processes"] if p["index"] > 0}
    segments = [k for k, c in enumerate(t.segments) if c["process"] in children]
    assert len(segments) >= 4
    for k in segments:
        start, end = segment_checkpoints(t, k)
        res = replay_segment(t, start=start, end=end)
        assert res.status == "verified", (k, res)
        assert res.checkpoints_compared == (end is not None), (k, res)
