"""The recorder's added cost per exec and per process, measured side by side in one run.

    python bench/exec_cost.py [--runs 20] [--chain 10] [--profile 15]

Short programs run natively (posix_spawn + wait) and recorded in-process
(recorder.record.record into a fresh temporary trace), interleaved, --runs times; medians are
shown. A recording of one program pays two kinds of cost:

- per trace: the trace's files and manifest (CPUID leaves, fsyncs), and storing every mapped
  file once (the program, ld.so, libc: read, hashed, compressed);
- per exec: the exec image (vDSO patched, mapped files identified) and its checkpoint; per
  process also its checkpoint at birth and its final checkpoint before the exit.

To tell them apart, each program is also run as "many": `/bin/true` at the end of a chain of
--chain execs in one process (`env env ... /bin/true`), `sh -c 'exit 0'` as a chain of
`exec sh -c ...`, and a shell running --chain - 1 more children (`sh -c '/bin/true; ...'`:
a fork, an exec and an exit each). Every exec and process of the trace goes through the same
path with one Recorder, FileIdentities and page store per trace. The marginal added cost of
one unit (an exec, a process) is ((record - native) of many - (record - native) of one) / the
units many adds; the rest of one run's added cost is per trace. The issue's target is a
per-exec added cost under 15 ms.

Last, a cProfile of recording each "many": the functions with the most time of their own and
the most cumulative time. Numbers are printed; nothing is asserted.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shlex
import shutil
import statistics
import sys
import tempfile
import time

from rrverify.recorder.record import record
from rrverify.trace import Trace


def programs(chain: int) -> dict[str, tuple[list[str], list[str], str]]:
    """name -> (one run, many, what many adds: --chain - 1 execs or processes)."""
    sh = "exit 0"
    for _ in range(chain - 1):
        sh = "exec sh -c " + shlex.quote(sh)
    return {
        "/bin/true": (["/bin/true"], ["env"] * (chain - 1) + ["/bin/true"], "exec"),
        "sh -c 'exit 0'": (["sh", "-c", "exit 0"], ["sh", "-c", sh], "exec"),
        "sh: N x true": (["sh", "-c", "exit 0"],
                         ["sh", "-c", "; ".join(["/bin/true"] * (chain - 1))], "process"),
    }


def resolve(cmd: list[str]) -> list[str]:
    return [shutil.which(cmd[0]) or cmd[0]] + cmd[1:]


def time_native(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    pid = os.posix_spawn(cmd[0], cmd, os.environ)
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed natively")
    return elapsed


def time_record(cmd: list[str], tmp: str,
                profile: cProfile.Profile | None = None) -> tuple[float, float]:
    """(wall time, seconds per checkpoint) of recording cmd into a fresh trace."""
    trace_dir = tempfile.mkdtemp(dir=tmp)
    os.rmdir(trace_dir)                       # record makes it
    try:
        t0 = time.perf_counter()
        if profile is not None:
            profile.enable()
        try:
            res = record(cmd, trace_dir)
        finally:
            if profile is not None:
                profile.disable()
        elapsed = time.perf_counter() - t0
        if res.exit_status != 0 or not res.complete:
            raise SystemExit(f"recording {shlex.join(cmd)} failed: {res.reason}")
        stats = Trace(trace_dir).manifest["stats"]
        return elapsed, stats["checkpoint_seconds"] / max(1, res.checkpoints)
    finally:
        shutil.rmtree(trace_dir, ignore_errors=True)


def top_functions(profile: cProfile.Profile, key: str, n: int, runs: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats(key)
    width = 60
    lines = [f"    {'ms/run own':>10} {'ms/run cum':>10} {'calls/run':>9}  function"]
    for func in stats.fcn_list[:n]:
        cc, nc, tt, ct, _ = stats.stats[func]
        filename, line, name = func
        where = name if filename == "~" else \
            f"{os.path.relpath(filename) if filename.startswith('/work') else os.path.basename(filename)}:{line}({name})"
        lines.append(f"    {tt / runs * 1e3:10.2f} {ct / runs * 1e3:10.2f} {nc / runs:9.1f}  "
                     f"{where[-width - 40:]}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="runs of each measurement (median)")
    ap.add_argument("--chain", type=int, default=10,
                    help="execs of a many run's chain (a shell's commands: one fewer)")
    ap.add_argument("--profile", type=int, default=15, help="functions shown per profile")
    args = ap.parse_args()
    if args.chain < 2:
        ap.error("--chain must be at least 2")
    tmp = tempfile.mkdtemp(prefix="rrverify-exec-cost-")
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    try:
        cases = {name: (resolve(one), resolve(many))
                 for name, (one, many, _) in programs(args.chain).items()}
        units = {name: unit for name, (_, _, unit) in programs(args.chain).items()}
        for one, many in cases.values():           # warm the page cache and our imports
            time_native(one), time_native(many), time_record(one, tmp)
        times: dict[tuple[str, str], list[float]] = {}
        os.dup2(devnull, 1)                          # the tracees inherit our stdout
        try:
            for _ in range(args.runs):               # interleaved: load changes hit all alike
                for name, (one, many) in cases.items():
                    for what, cmd in (("one", one), ("many", many)):
                        times.setdefault((name, "native " + what), []).append(time_native(cmd))
                        rec, ckpt = time_record(cmd, tmp)
                        times.setdefault((name, "record " + what), []).append(rec)
                        times.setdefault((name, "checkpoint"), []).append(ckpt)
        finally:
            os.dup2(saved, 1)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"median of {args.runs} interleaved runs; many adds {args.chain - 1} execs or "
              f"processes; ms")
        print()
        print(f"{'program':16} {'native':>8} {'record':>8} {'added':>8} {'ratio':>7}   "
              f"{'many nat':>9} {'many rec':>9} {'per unit':>13} {'per trace':>9} "
              f"{'checkpoint':>10}")
        for name in cases:
            nat, rec = med[name, "native one"] * 1e3, med[name, "record one"] * 1e3
            mnat, mrec = med[name, "native many"] * 1e3, med[name, "record many"] * 1e3
            per_unit = ((mrec - mnat) - (rec - nat)) / (args.chain - 1)
            print(f"{name:16} {nat:8.2f} {rec:8.2f} {rec - nat:8.2f} {rec / nat:7.1f}   "
                  f"{mnat:9.2f} {mrec:9.2f} {per_unit:6.2f}/{units[name]:7} "
                  f"{rec - nat - per_unit:9.2f} {med[name, 'checkpoint'] * 1e3:10.2f}")
        print()
        print("added: record - native for one run (per-trace and per-exec costs together).")
        print("per unit: the marginal added cost of one more exec (target < 15), with its "
              "checkpoint, or of one more process (fork, exec, exit), with its three.")
        print("per trace: the rest of one run's added cost (it includes the final checkpoint, "
              "which every process that exits takes).")
        print("checkpoint: the time a checkpoint stops the recorder in one run "
              "(stats.checkpoint_seconds / checkpoints; digesting and storing it runs beside, "
              "off the tracer's CPU).")
        for name, (_, many) in cases.items():
            profile = cProfile.Profile()
            n = max(1, args.runs // 4)
            os.dup2(devnull, 1)
            try:
                for _ in range(n):
                    time_record(many, tmp, profile)
            finally:
                os.dup2(saved, 1)
            for key, title in (("tottime", "own time"), ("cumulative", "cumulative time")):
                print()
                print(f"profile of recording {name}, many ({args.chain - 1} more "
                      f"{units[name]}{'es' if units[name] == 'process' else 's'}), by {title}, "
                      f"per recording ({n} recordings):")
                print(top_functions(profile, key, args.profile, n))
    finally:
        os.close(saved)
        os.close(devnull)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
