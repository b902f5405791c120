"""The rrverify command line. Exit codes: the tracee's own (record), 0 verified, 1 diverged,
2 the trace or the command is unusable (one line on stderr, never a traceback)."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading

from .errors import RRVerifyError, UsageError

COMMANDS = ("record", "replay", "verify", "info", "dump", "check", "demo")
DEFAULT_SEGMENT_TIMEOUT = 600.0     # seconds; generous: a segment normally takes well under 10 s
MAX_COUNT = 2**63 - 1               # the recorder's event counters are 64-bit
MAX_SECONDS = 10**9                 # and its clock is u64 nanoseconds


class StdoutError(UsageError):
    """stdout is closed or cannot be written: the report has nowhere to go."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):       # one line, like every other failure
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _number(convert, lo, hi):
    """An argparse type: a number from lo to hi (nan and inf are out of range)."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{text} is out of range ({lo} to {hi})")
        return value
    return parse


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="rrverify",
        description="Record a Linux x86-64 program without a PMU and verify its replay.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record", help="record a command: rrverify record [-o DIR] -- CMD ...")
    r.add_argument("-o", "--output", help="trace directory (default: $RRVERIFY_TRACE_DIR or "
                                          "~/.local/share/rrverify/<prog>-<n>)")
    r.add_argument("--checkpoint-every", type=_number(int, 0, MAX_COUNT), metavar="N",
                   default=None,
                   help="take a checkpoint every N events (default 20000; 0: never)")
    r.add_argument("--checkpoint-interval", type=_number(float, 0, MAX_SECONDS), metavar="SEC",
                   default=None,
                   help="...and at least every SEC seconds (default 2; 0: never)")
    r.add_argument("--no-syscallbuf", action="store_true",
                   help="no syscall buffering: every syscall takes two ptrace stops (for "
                        "comparison, and as a fallback)")
    r.add_argument("--serialize", action="store_true",
                   help="run one process at a time, as rr does (for comparison; processes "
                        "that share no memory otherwise run at once)")
    r.add_argument("--tracee-cpus", choices=("all", "spread", "tracer"), default=None,
                   help="where the recorded processes run: spread (default) gives each CPU a "
                        "tracer thread and moves processes between them at their exec; tracer "
                        "keeps every process on one tracer's CPU; all lets them run anywhere, "
                        "stopping on the one tracer's")
    r.add_argument("cmd", nargs=argparse.REMAINDER)
    v = sub.add_parser("replay", help="replay a trace on this machine and verify every event")
    v.add_argument("trace", nargs="?")
    v.add_argument("--segment", type=_number(int, 0, MAX_COUNT), metavar="K",
                   help="only segment K: from checkpoint K to checkpoint K+1")
    v.add_argument("--echo", action="store_true", help="re-emit the tracee's stdout/stderr")
    v.add_argument("--json", metavar="FILE", help="write the result as JSON")
    w = sub.add_parser("verify", help="verify a trace's segments in parallel on Ray "
                                      "(also: rrverify TRACE)")
    w.add_argument("trace", nargs="?")
    w.add_argument("--workers", type=_number(int, 1, 2**20),
                   default=max(1, len(os.sched_getaffinity(0))),
                   help="Ray workers (default: this machine's CPUs)")
    w.add_argument("--address", help="join a Ray cluster (ray://HOST:10001 or HOST:6379) "
                                     "instead of starting a local one")
    w.add_argument("--ship", action="store_true",
                   help="send workers what they need through Ray's object store "
                        "(no shared filesystem)")
    w.add_argument("--json", metavar="FILE", help="write the report as JSON")
    w.add_argument("--junit", metavar="FILE", help="write the report as JUnit XML")
    w.add_argument("--fail-fast", action="store_true", help="stop at the first failed segment")
    w.add_argument("--retries", type=_number(int, 0, 100), default=2,
                   help="retries of a lost worker (default 2)")
    w.add_argument("--segment-timeout", type=_number(float, 0.001, MAX_SECONDS), metavar="SEC",
                   default=DEFAULT_SEGMENT_TIMEOUT,
                   help=f"report a segment without a result after SEC seconds as timeout and "
                        f"replace its worker (default {DEFAULT_SEGMENT_TIMEOUT:g})")
    i = sub.add_parser("info", help="describe a trace")
    i.add_argument("trace", nargs="?")
    i.add_argument("--json", action="store_true", help="print the manifest as JSON")
    d = sub.add_parser("dump", help="print one line per event")
    d.add_argument("trace", nargs="?")
    d.add_argument("--pid", type=_number(int, 1, 2**31 - 1), metavar="P",
                   help="only the events of the recorded process P")
    c = sub.add_parser("check", help="read every byte of a trace and check every hash "
                                     "(before uploading it)")
    c.add_argument("trace", nargs="?")
    dm = sub.add_parser("demo", help="record a bundled program and verify it on a local Ray")
    dm.add_argument("--workers", type=_number(int, 1, 2**20), default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `rrverify TRACE ...` verifies the trace.
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv = ["verify"] + argv
    args = _parser().parse_args(argv)
    try:
        if args.command != "record":        # record's stdout is the tracee's
            _require_stdout()
            sys.stdout = _GuardedStdout(sys.stdout)
        code = _run(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # `rrverify dump | head`: the reader left; that is not an error.
        _discard_stdout()
        return 0
    except RRVerifyError as e:
        if isinstance(e, StdoutError):
            _discard_stdout()
        print(f"rrverify: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("rrverify: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 -- one line, not a traceback; RRVERIFY_DEBUG=1 for it
        if os.environ.get("RRVERIFY_DEBUG"):
            raise
        print(f"rrverify: internal error: {type(e).__name__}: {e} "
              f"(RRVERIFY_DEBUG=1 shows where)", file=sys.stderr)
        return 2


def _require_stdout() -> None:
    try:
        if sys.stdout is None:
            raise OSError("closed")
        os.fstat(sys.stdout.fileno())
    except OSError:
        raise StdoutError("stdout is closed: nowhere to write the output "
                          "(redirect it to a file or /dev/null instead)") from None


class _GuardedStdout:
    """stdout, whose write failures (a full disk, a closed terminal) say so in one line."""

    def __init__(self, f):
        self._f = f

    def write(self, s: str) -> int:
        try:
            return self._f.write(s)
        except OSError as e:
            _stdout_failed(e)

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as e:
            _stdout_failed(e)

    def __getattr__(self, name):
        return getattr(self._f, name)


def _stdout_failed(e: OSError):
    if isinstance(e, BrokenPipeError):
        raise e
    raise StdoutError(f"cannot write to stdout: {e.strerror or e}") from None


def _discard_stdout() -> None:
    """What is left in stdout's buffer goes nowhere (not into a traceback at exit)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)


@contextlib.contextmanager
def _writing(path: str, option: str):
    try:
        yield
    except OSError as e:
        raise UsageError(f"{option} {path}: cannot write it: {e.strerror or e}") from None


def _check_writable(path: str | None, option: str) -> None:
    """Fail before a long run, not after it, when a report cannot be written."""
    if path is None:
        return
    existed = os.path.lexists(path)
    with _writing(path, option), open(path, "a"):
        pass
    if not existed:
        os.unlink(path)


@contextlib.contextmanager
def _stdout_to_stderr():
    """Ray and the processes it starts write to fd 1 too: while it runs, that goes to stderr,
    so stdout carries rrverify's report only."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _run(args) -> int:
    if args.command == "record":
        return cmd_record(args)
    if args.command == "replay":
        return cmd_replay(args)
    if args.command == "verify":
        return cmd_verify(args)
    if args.command == "info":
        return cmd_info(args)
    if args.command == "dump":
        return cmd_dump(args)
    if args.command == "check":
        from .check import check
        from . import tracedirs
        print(check(tracedirs.resolve(args.trace)))
        return 0
    if args.command == "demo":
        from .demo import run_demo
        return run_demo(args.workers)
    raise UsageError(f"unknown command {args.command}")


def cmd_record(args) -> int:
    from .recorder import record as recorder
    from . import tracedirs
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise UsageError("record: no command given (rrverify record -- CMD ...)")
    if args.output:
        out, made = args.output, tracedirs.prepare(args.output)
    else:
        out, made = tracedirs.new_trace_dir(cmd[0]), True
    opts, result = {}, None
    if args.checkpoint_every is not None:
        opts["checkpoint_every"] = args.checkpoint_every
    if args.checkpoint_interval is not None:
        opts["checkpoint_interval"] = args.checkpoint_interval
    opts["serialize"] = args.serialize
    opts["syscallbuf"] = not args.no_syscallbuf
    if args.tracee_cpus is not None:
        opts["tracee_cpus"] = args.tracee_cpus
    # The tracee shares our terminal: let it, not us, take the keyboard's signals.
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGQUIT)}
    try:
        with _stop_recording_on(signal.SIGTERM, signal.SIGHUP):
            try:
                result = recorder.record(cmd, out, **opts)
            except RRVerifyError:
                if recorder.STOP.signum is None:
                    raise
            finally:
                started = tracedirs.settle(out, made=made, latest=not args.output)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if recorder.STOP.signum is not None and not (result and result.complete):
        name = signal.Signals(recorder.STOP.signum).name
        print(f"rrverify: record: the recorder received {name}: "
              + (f"trace incomplete at {out}" if started else "nothing recorded"),
              file=sys.stderr)
        return 128 + recorder.STOP.signum
    if not result.complete:
        print(f"rrverify: record: trace incomplete: {result.reason}", file=sys.stderr)
    return result.exit_status


@contextlib.contextmanager
def _stop_recording_on(*signums):
    """These signals end a recording cleanly. The record loop blocks in a native waitpid,
    where a Python handler would not run: the signals are blocked and taken by a thread,
    which kills the tracee, so that the loop returns with its death."""
    from .recorder.record import stop_recording
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, signums)

    def take():
        stop_recording(signal.sigwait(signums))
    threading.Thread(target=take, name="rrverify-stop-signals", daemon=True).start()
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def cmd_replay(args) -> int:
    from .errors import TraceError
    from .replayer.replay import replay, replay_processes, segment_checkpoints
    from .replayer import crossprocess
    from .replayer.report import format_text
    from .trace import Trace
    from . import tracedirs
    from .cluster.compat import incompatibilities, rlimit_shortfalls
    _check_writable(args.json, "--json")
    trace = Trace(tracedirs.resolve(args.trace))
    problems = incompatibilities(trace.manifest["host"])
    if problems:
        raise UsageError(f"replay: this CPU shows the program other features than the "
                         f"recording CPU did ({problems[0]}"
                         + (f", and {len(problems) - 1} more" if len(problems) > 1 else "") + ")")
    problems = rlimit_shortfalls(trace.manifest, here="this process")
    if problems:
        raise UsageError(f"replay: this process cannot give the program the resource limits it "
                         f"was recorded with ({'; '.join(problems)})")
    if args.echo:
        sys.stdout.flush()
    if args.segment is not None:
        try:
            start, end = segment_checkpoints(trace, args.segment)
        except TraceError as e:
            raise UsageError(f"replay: --segment {args.segment}: {e}") from None
        result = replay(trace, start=start, end=end, echo=args.echo)
    else:
        result, processes = replay_processes(trace, echo=args.echo)
    checks, cross = 0, []
    if result.status == "verified" and args.segment is None:
        checks, cross = crossprocess.check(trace, [
            crossprocess.segment_facts(trace, p, 0, trace.stream(p).event_count)
            for p in range(len(trace.processes))])
    if args.json:
        with _writing(args.json, "--json"), open(args.json, "w") as f:
            json.dump({"trace": trace.path,
                       "status": "diverged" if cross else result.status,
                       "events": result.events,
                       "trace_events": result.trace_events, "complete": result.complete_trace,
                       "divergence": result.divergence, "stats": result.stats,
                       "cross_process_checks": checks, "cross_process": cross,
                       "syscallbuf_invariant_violations": result.invariant_violations,
                       "seconds": result.seconds}, f, indent=1)
    for div in cross:
        print(f"cross-process divergence ({div['check']}): {div['detail']}")
    if cross:
        return 1
    if result.status == "verified":
        note = "" if result.complete_trace else " (incomplete trace: verified up to its end)"
        what = (f"segment {args.segment} (events {result.first_event}-{result.end_event})"
                if args.segment is not None else
                f"{processes} process{'es' if processes != 1 else ''}")
        print(f"verified: {what}, {result.events} events, "
              f"{result.checkpoints_compared} checkpoints compared{note}")
        return 0
    for line in format_text(result.divergence):
        print(line)
    for v in result.invariant_violations:
        if v is not result.divergence:
            print(f"also: syscallbuf-invariant at event {v['event']}: {v['detail']}")
    return 1


def cmd_verify(args) -> int:
    from .cluster.reports import summary_lines, write_json, write_junit
    from .cluster.verify import verify
    from . import tracedirs
    _check_writable(args.json, "--json")
    _check_writable(args.junit, "--junit")
    with _stdout_to_stderr():
        report = verify(tracedirs.resolve(args.trace), workers=args.workers,
                        address=args.address, ship=args.ship, fail_fast=args.fail_fast,
                        retries=args.retries, segment_timeout=args.segment_timeout)
    if args.json:
        with _writing(args.json, "--json"):
            write_json(report, args.json)
    if args.junit:
        with _writing(args.junit, "--junit"):
            write_junit(report, args.junit)
    for line in summary_lines(report):
        print(line)
    return 0 if report["status"] == "verified" else 1


def cmd_info(args) -> int:
    from .trace import Trace
    from . import tracedirs
    trace = Trace(tracedirs.resolve(args.trace))
    m = trace.manifest
    if args.json:
        print(json.dumps(m, indent=1, sort_keys=True))
        return 0
    stats, end, h = m.get("stats") or {}, m.get("end") or {}, m["host"]
    size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(trace.path) for f in fs)
    print(f"trace:     {os.path.realpath(trace.path)} (format v{m['version']}, {m.get('uuid')})")
    print(f"command:   {' '.join(m['command'])}")
    print(f"program:   {m['exe']}  (cwd {m['cwd']})")
    print(f"host:      {h.get('hostname')}, Linux {h.get('kernel')}")
    cpu = h.get("cpu", {})
    print(f"cpu:       {cpu.get('vendor')} {cpu.get('model_name')} "
          f"({len(h.get('cpuid', {}))} CPUID leaves, XSAVE {h.get('xsave', {}).get('max_size')} bytes)")
    print(f"events:    {trace.event_count} in {len(trace.frames)} frames "
          f"({stats.get('syscalls', '?')} syscalls); {len(trace.checkpoints)} checkpoints, "
          f"so {len(trace.checkpoints)} segments")
    print(f"size:      {size} bytes on disk (events {stats.get('event_bytes_raw', '?')} raw, "
          f"{stats.get('event_bytes_compressed', '?')} compressed; blobs {stats.get('blob_bytes', '?')}; "
          f"{len(trace.files)} mapped files)")
    print(f"recorded:  {stats.get('seconds', '?')} s")
    for line in process_tree(trace):
        print(line)
    print(f"status:    {'complete' if trace.complete else 'INCOMPLETE'}"
          f"{': ' + end['reason'] if end.get('reason') else ''}")
    return 0


def process_tree(trace) -> list[str]:
    """`processes: N`, then one line per process, indented under its parent: pid, what it
    executed, how it ended, its events and checkpoints."""
    from .recorder.record import describe_wait_status
    procs = trace.processes
    summary = {p.get("index"): p for p in trace.manifest.get("processes") or []
               if isinstance(p, dict)}
    checkpoints: dict[int, int] = {}
    for c in trace.checkpoints:
        checkpoints[c["process"]] = checkpoints.get(c["process"], 0) + 1
    children: dict[int | None, list[dict]] = {}
    for p in procs:
        children.setdefault(p["parent"], []).append(p)
    lines = [f"processes: {len(procs)}"]

    def walk(p: dict, depth: int) -> None:
        s = summary.get(p["index"], {})
        execs = [e for e in s.get("execs") or [] if isinstance(e, str)]
        status = s.get("wait_status")
        ended = describe_wait_status(status) if isinstance(status, int) else "did not end"
        lines.append(f"  {'  ' * depth}{p['pid']}: "
                     f"{' -> '.join(execs) if execs else '(no exec)'}; {ended}; "
                     f"{trace.stream(p['index']).event_count} events, "
                     f"{checkpoints.get(p['index'], 0)} checkpoints")
        for child in children.get(p["index"], []):
            walk(child, depth + 1)
    for root in children.get(None, []):
        walk(root, 0)
    return lines


def cmd_dump(args) -> int:
    from .dump import format_event
    from .trace import Trace
    from . import tracedirs
    trace = Trace(tracedirs.resolve(args.trace))
    out = sys.stdout
    procs = trace.processes
    chosen = [p for p in procs if args.pid is None or p["pid"] == args.pid]
    if not chosen:
        raise UsageError(f"dump: the trace has no process {args.pid} (its processes: "
                         f"{', '.join(str(p['pid']) for p in procs[:20])}"
                         + (", ..." if len(procs) > 20 else "") + ")")
    for p in chosen:
        if len(procs) > 1:
            parent = (f", child of {procs[p['parent']]['pid']} (its event {p['parent_event']})"
                      if p["parent"] is not None else "")
            out.write(f"process {p['pid']}{parent}:\n")
        for ev in trace.stream(p["index"]).events():
            out.write(format_event(ev) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
