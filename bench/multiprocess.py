"""Recording and verifying a multi-process build: `make -j2` of 8 small C files.

Prints, from one run (the machines are shared and noisy: compare the ratios, not the
seconds), the median wall time of:
- the build natively;
- recording it as rrverify does by default (--tracee-cpus spread: a tracer thread per CPU,
  each process on its tracer's CPU, moved at its exec to the CPU with fewer at work);
- recording it with one tracer thread, every process on its CPU (--tracee-cpus tracer: the
  cheapest ptrace stops, the processes interleaved on one CPU);
- recording it with one tracer and the processes on every CPU (--tracee-cpus all: parallel,
  but each ptrace stop crosses CPUs);
- recording it one process at a time (--serialize, as rr does);
- two recorders at once, each pinned to a CPU of its own and recording half of the compiles:
  the bound of a tracer thread per CPU (with two or more CPUs);
- verifying the default recording with 1 and with 2 workers.

Every recording finds the analysis cache warm (an untimed recording fills it first): syscall
sites and the vDSO already decoded, as on a machine that recorded before. The traces are
deleted after the last run, not between runs: ext4 creates files slowly right after many were
deleted (it skips the inodes freed in the last seconds, reading each), which made every
recording pay for deleting the one before.

    python bench/multiprocess.py [--files 8] [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

MAKEFILE = """OBJS={objs} main.o
prog: $(OBJS)
\tgcc -o prog $(OBJS)
%.o: %.c
\tgcc -c -O1 $< -o $@
"""


def make_project(root: str, files: int) -> None:
    for i in range(files):
        with open(os.path.join(root, f"f{i}.c"), "w") as f:
            f.write("#include <string.h>\n")
            for n in range(20):
                f.write(f"int f{i}_{n}(int x, const char *s) {{ int y = x * {n + 1}; "
                        f"for (int k = 0; k < x; k++) y += (int)strlen(s) * k ^ {n}; "
                        f"return y; }}\n")
    with open(os.path.join(root, "main.c"), "w") as f:
        f.write("int main(void) { return 0; }\n")
    with open(os.path.join(root, "Makefile"), "w") as f:
        f.write(MAKEFILE.format(objs=" ".join(f"f{i}.o" for i in range(files))))


def clean(root: str) -> None:
    for name in os.listdir(root):
        if name.endswith(".o") or name == "prog":
            os.unlink(os.path.join(root, name))


def timed(cmd: list[str], cwd: str) -> float:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {proc.stderr.decode()[-500:]}")
    return time.monotonic() - t0


HALF_MAKEFILE = """all: {objs}
%.o: %.c
\tgcc -c -O1 $< -o $@
"""


def timed_two_recorders(rrverify: list[str], src: str, files: int, out: str) -> float | None:
    """Two recorders at once, each pinned with all its threads to a CPU of its own, each
    recording the compiles of half of the files (the link left out): the bound of a tracer
    thread per CPU, each owning the processes on its CPU. None with fewer than two CPUs."""
    cpus = sorted(os.sched_getaffinity(0))[-2:]
    if len(cpus) < 2:
        return None
    objs = [f"f{i}.o" for i in range(files)] + ["main.o"]
    halves = [objs[:len(objs) // 2], objs[len(objs) // 2:]]
    for k, half in enumerate(halves):
        with open(os.path.join(src, f"half{k}.mk"), "w") as f:
            f.write(HALF_MAKEFILE.format(objs=" ".join(half)))
    t0 = time.monotonic()
    procs = [subprocess.Popen(rrverify + ["record", "-o", f"{out}-{k}", "--", "make", "-s", "-f",
                                          f"half{k}.mk"], cwd=src, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE,
                              preexec_fn=lambda cpu=cpu: os.sched_setaffinity(0, {cpu}))
             for k, cpu in enumerate(cpus)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"two recorders: {err.decode()[-500:]}")
    elapsed = time.monotonic() - t0
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    rrverify = [sys.executable, "-m", "rrverify"]
    work = tempfile.mkdtemp(prefix="rrverify-bench-make-")
    try:
        src = os.path.join(work, "src")
        os.mkdir(src)
        make_project(src, args.files)
        modes = {"native": None, "record": [],
                 "record --tracee-cpus tracer": ["--tracee-cpus", "tracer"],
                 "record --tracee-cpus all": ["--tracee-cpus", "all"],
                 "record --serialize": ["--serialize"]}
        times: dict[str, list[float]] = {m: [] for m in modes}
        two = "two recorders, a CPU each (*)"
        times[two] = []
        trace = ""
        os.mkdir(os.path.join(work, "kept"))
        # One recording first, untimed: it fills the analysis cache (rrverify/analysis_cache.py)
        # as any recording after a machine's first finds it.
        timed(rrverify + ["record", "-o", os.path.join(work, "warm-up"), "--", "make", "-j2"],
              src)
        for run in range(args.runs):     # interleaved: noise hits every mode alike
            clean(src)
            split = timed_two_recorders(rrverify, src, args.files,
                                        os.path.join(work, "kept", f"split{run}"))
            if split is not None:
                times[two].append(split)
            for mode, flags in modes.items():
                clean(src)
                if flags is None:
                    times[mode].append(timed(["make", "-j2"], src))
                    continue
                t = os.path.join(work, "kept", f"t{run}-{mode.replace(' ', '_')}")
                times[mode].append(timed(rrverify + ["record", "-o", t, *flags, "--",
                                                     "make", "-j2"], src))
                if mode == "record" and not os.path.exists(trace):
                    trace = t
        verify, work_wall = {}, {}
        for n in (1, 2):
            report = os.path.join(work, f"r{n}.json")
            verify[n] = statistics.median(
                timed(rrverify + [trace, "--workers", str(n), "--json", report], work)
                for _ in range(args.runs))
            with open(report) as f:
                t = json.load(f)["totals"]
            work_wall[n] = (t["segment_seconds"], t["wall_seconds"])
        native = statistics.median(times["native"])
        print(f"make -j2 of {args.files} C files, median of {args.runs} runs:")
        for mode, ts in times.items():
            if ts:
                m = statistics.median(ts)
                print(f"  {mode:30s} {m:7.3f} s   {m / native:6.2f}x native")
        for n in (1, 2):
            seg, wall = work_wall[n]
            print(f"  verify, {n} worker{'s' if n > 1 else ' '}              {verify[n]:7.3f} s   "
                  f"(segments: {seg:.2f} s of work in {wall:.2f} s wall)")
        print(f"  verify 2 workers vs 1: {verify[1] / verify[2]:.2f}x faster end to end (Ray's "
              f"start-up included), {work_wall[1][1] / work_wall[2][1]:.2f}x for the segments")
        with open(os.path.join(trace, "manifest.json")) as f:
            stats = json.load(f)["stats"]
        cpu = stats.get("cpu_seconds", {})
        print(f"  one recording's CPU time: {stats['seconds']:.3f} s wall; " +
              ", ".join(f"{k.replace('_', ' ')} {v:.3f} s" for k, v in cpu.items()))
        print(f"  its tracer threads: {stats.get('tracer_threads', 1)}, processes moved "
              f"between them: {stats.get('handed_over', 0)}")
        procs = subprocess.run(rrverify + ["info", trace], capture_output=True).stdout.decode()
        print("  trace: " + " ".join(line.strip() for line in procs.splitlines()
                                     if line.startswith(("processes", "events"))))
        if times[two]:
            print("  (*) the bound of a tracer thread per CPU: two recorders at once, each with "
                  "all its threads on a CPU of its own,\n      each recording the compiles of "
                  "half of the files (no link), against the build natively")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
