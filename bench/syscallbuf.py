"""Syscall buffering: what the preload saves, workload by workload.

For each workload, from one run (the machines are shared and noisy: compare the ratios, not the
seconds), the median wall time of:
- the command natively;
- recording it with the preload (the default);
- recording it with --no-syscallbuf (two ptrace stops for every syscall);
- replaying the default recording (`rrverify replay`, every process, every check);
and, for the default recording, how many syscalls were buffered and which still took a ptrace
stop (the five most frequent), to say why.

Workloads: a loop of pread/write/fstat/clock_gettime/getpid (tests/programs/sb_loop.c, 100000
iterations, then 500000 to take the added cost per buffered syscall from the difference),
python3 -c 'import json', gzip and sort of a real file, and make -j2 of 8 small C files
(bench/multiprocess.py's project).

    python bench/syscallbuf.py [--runs 3] [--only loop,json,...]
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from multiprocess import clean, make_project  # noqa: E402

RRVERIFY = [sys.executable, "-m", "rrverify"]
LOOP, LONG_LOOP = 100000, 500000
SYSCALLS_PER_ITERATION = 5      # sb_loop.c: pread, write, fstat, clock_gettime, getpid


def timed(cmd: list[str], cwd: str | None = None) -> float:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {proc.stderr.decode()[-500:]}")
    return time.monotonic() - t0


def ptrace_stops(trace: str) -> tuple[int, int, list[tuple[str, int]]]:
    """Buffered syscalls, traced syscalls, and the most frequent traced ones by name."""
    from rrverify import events as E
    from rrverify.recorder.syscalls import name_of
    from rrverify.trace import Trace
    buffered, traced = 0, collections.Counter()
    for ev in Trace(trace).events():
        if ev.kind == E.FLUSH:
            buffered += ev.nr
        elif ev.kind == E.SYSCALL:
            traced[name_of(ev.nr)] += 1
    return buffered, sum(traced.values()), traced.most_common(5)


def workloads(tmp: str) -> dict[str, tuple[list[str], str | None, callable]]:
    loop = os.path.join(tmp, "sb_loop")
    subprocess.run(["gcc", "-O1", "-Wl,-z,now", "-o", loop,
                    os.path.join(HERE, "..", "tests", "programs", "sb_loop.c")], check=True)
    data = os.path.join(tmp, "words")
    with open("/usr/share/dict/words" if os.path.exists("/usr/share/dict/words")
              else "/etc/services", "rb") as f:
        text = f.read()
    with open(data, "wb") as f:
        while f.tell() < 4 << 20:
            f.write(text)
    project = os.path.join(tmp, "project")
    os.makedirs(project)
    make_project(project, 8)
    return {
        "loop": ([loop, str(LOOP), data], None, lambda: None),
        "json": (["/usr/bin/python3", "-c", "import json"], None, lambda: None),
        "gzip": (["/bin/gzip", "-c", data], None, lambda: None),
        "sort": (["/usr/bin/sort", data], None, lambda: None),
        "make": (["make", "-j2", "-s"], project, lambda: clean(project)),
    }


def loop_slope(cmd: list[str], trace: str, runs: int, native: float, record: float) -> None:
    """The loop again, LONG_LOOP iterations, native and recorded side by side: the difference
    from the short run is the cost of the extra iterations alone (start-up, the first
    checkpoints and the patching of each site cancel out), and the ratio at that length is
    what a long-running program sees."""
    long_cmd = [cmd[0], str(LONG_LOOP)] + cmd[2:]
    times = collections.defaultdict(list)
    for _ in range(runs):
        times["native"].append(timed(long_cmd))
        shutil.rmtree(trace, ignore_errors=True)
        times["record"].append(timed(RRVERIFY + ["record", "-o", trace, "--"] + long_cmd))
    nat, rec = statistics.median(times["native"]), statistics.median(times["record"])
    extra = SYSCALLS_PER_ITERATION * (LONG_LOOP - LOOP)
    per = ((rec - record) - (nat - native)) / extra * 1e6
    print(f"  {LONG_LOOP} iterations: native {nat:.3f} s; record {rec:.3f} s "
          f"({rec / nat:.1f}x); the {extra} extra buffered syscalls cost {per:.2f} us each "
          f"added, checkpoints included")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, (cmd, cwd, reset) in workloads(tmp).items():
            if args.only and name not in args.only.split(","):
                continue
            times = collections.defaultdict(list)
            trace = os.path.join(tmp, f"{name}.trace")
            for _ in range(args.runs):
                for mode, prefix in (("native", []),
                                     ("record", RRVERIFY + ["record", "-o", trace, "--"]),
                                     ("no-syscallbuf", RRVERIFY + ["record", "--no-syscallbuf",
                                                                   "-o", trace + ".nb", "--"])):
                    for d in (trace, trace + ".nb"):
                        shutil.rmtree(d, ignore_errors=True)
                    reset()
                    times[mode].append(timed(prefix + cmd, cwd))
                    if mode == "record":
                        times["replay"].append(timed(RRVERIFY + ["replay", trace]))
            native = statistics.median(times["native"])
            med = {k: statistics.median(v) for k, v in times.items()}
            shutil.rmtree(trace, ignore_errors=True)
            reset()
            timed(RRVERIFY + ["record", "-o", trace, "--"] + cmd, cwd)
            buffered, traced, top = ptrace_stops(trace)
            print(f"{name}: {' '.join(cmd[:3])}")
            print(f"  native {native:.3f} s; record {med['record']:.3f} s "
                  f"({med['record'] / native:.1f}x); --no-syscallbuf {med['no-syscallbuf']:.3f} s "
                  f"({med['no-syscallbuf'] / native:.1f}x); preload saves "
                  f"{med['no-syscallbuf'] / med['record']:.2f}x; replay {med['replay']:.3f} s "
                  f"({med['replay'] / med['record']:.2f}x record)")
            print(f"  {buffered} syscalls buffered, {traced} through ptrace; most frequent "
                  f"traced: " + ", ".join(f"{n} {c}" for n, c in top))
            if name == "loop":
                per = (med["record"] - native) / (SYSCALLS_PER_ITERATION * LOOP) * 1e6
                print(f"  added per buffered syscall: {per:.2f} us (start-up included)")
                loop_slope(cmd, trace, args.runs, native, med["record"])


if __name__ == "__main__":
    main()
