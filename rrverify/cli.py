"""The rrverify command line. Exit codes: the tracee's own (record), 0 verified, 1 diverged,
2 the trace or the command is unusable (one line on stderr, never a traceback)."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from .errors import RRVerifyError, UsageError

COMMANDS = ("record", "replay", "info", "dump", "demo")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rrverify",
        description="Record a Linux x86-64 program without a PMU and verify its replay.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record", help="record a command: rrverify record [-o DIR] -- CMD ...")
    r.add_argument("-o", "--output", help="trace directory (default: $RRVERIFY_TRACE_DIR or "
                                          "~/.local/share/rrverify/<prog>-<n>)")
    r.add_argument("cmd", nargs=argparse.REMAINDER)
    v = sub.add_parser("replay", help="replay a trace on this machine and verify every event")
    v.add_argument("trace", nargs="?")
    v.add_argument("--echo", action="store_true", help="re-emit the tracee's stdout/stderr")
    v.add_argument("--json", metavar="FILE", help="write the result as JSON")
    i = sub.add_parser("info", help="describe a trace")
    i.add_argument("trace", nargs="?")
    i.add_argument("--json", action="store_true", help="print the manifest as JSON")
    d = sub.add_parser("dump", help="print one line per event")
    d.add_argument("trace", nargs="?")
    sub.add_parser("demo", help="record a bundled program and verify its replay")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `rrverify TRACE` verifies the trace.
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv = ["replay"] + argv
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except RRVerifyError as e:
        print(f"rrverify: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("rrverify: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `rrverify dump | head`: the reader left; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run(args) -> int:
    if args.command == "record":
        return cmd_record(args)
    if args.command == "replay":
        return cmd_replay(args)
    if args.command == "info":
        return cmd_info(args)
    if args.command == "dump":
        return cmd_dump(args)
    if args.command == "demo":
        from .demo import run_demo
        return run_demo()
    raise UsageError(f"unknown command {args.command}")


def cmd_record(args) -> int:
    from .recorder.record import record
    from . import tracedirs
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise UsageError("record: no command given (rrverify record -- CMD ...)")
    out = args.output or tracedirs.new_trace_dir(cmd[0])
    if not args.output:
        tracedirs.set_latest(out)
    # The tracee shares our terminal: let it, not us, take the keyboard's signals.
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGQUIT)}
    try:
        result = record(cmd, out)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if not result.complete:
        print(f"rrverify: record: trace incomplete: {result.reason}", file=sys.stderr)
    return result.exit_status


def cmd_replay(args) -> int:
    from .replayer.replay import replay
    from .replayer.report import format_text
    from .trace import Trace
    from . import tracedirs
    trace = Trace(tracedirs.resolve(args.trace))
    if args.echo:
        sys.stdout.flush()
    result = replay(trace, echo=args.echo)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"trace": trace.path, "status": result.status, "events": result.events,
                       "trace_events": result.trace_events, "complete": result.complete_trace,
                       "divergence": result.divergence, "stats": result.stats,
                       "seconds": result.seconds}, f, indent=1)
    if result.status == "verified":
        note = "" if result.complete_trace else " (incomplete trace: verified up to its end)"
        print(f"verified: 1 process, {result.events} events{note}")
        return 0
    for line in format_text(result.divergence):
        print(line)
    return 1


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
          f"({stats.get('syscalls', '?')} syscalls)")
    print(f"size:      {size} bytes on disk (events {stats.get('event_bytes_raw', '?')} raw, "
          f"{stats.get('event_bytes_compressed', '?')} compressed; blobs {stats.get('blob_bytes', '?')}; "
          f"{len(trace.files)} mapped files)")
    print(f"recorded:  {stats.get('seconds', '?')} s")
    print(f"status:    {'complete' if trace.complete else 'INCOMPLETE'}"
          f"{': ' + end['reason'] if end.get('reason') else ''}")
    return 0


def cmd_dump(args) -> int:
    from .dump import format_event
    from .trace import Trace
    from . import tracedirs
    trace = Trace(tracedirs.resolve(args.trace))
    out = sys.stdout
    for ev in trace.events():
        out.write(format_event(ev) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
