"""Recording and replay overhead, measured side by side in one run.

    python bench/record_overhead.py [--repeat 3]

For each workload: native wall time, record wall time, replay wall time (median of --repeat
interleaved runs), their ratios, and the recorder's cost per syscall next to the floor: a bare
C tracer taking the same two ptrace stops per syscall (and the one-stop floor replay can reach),
both pinned to one CPU as the recorder is. Record and replay are timed in-process (no Python
start-up); native runs are plain fork+exec.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from rrverify._native import lib
from rrverify.recorder.record import record
from rrverify.replayer.replay import replay
from rrverify.trace import Trace
from rrverify.tracee import choose_cpu

HERE = os.path.dirname(os.path.abspath(__file__))
LOOP_SRC = os.path.join(HERE, "..", "tests", "programs", "syscall_loop.c")
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def workloads(tmp: str) -> dict[str, list[str]]:
    loop = os.path.join(tmp, "syscall_loop")
    subprocess.run(["gcc", "-O2", "-o", loop, LOOP_SRC], check=True)
    big = os.path.join(tmp, "20mb.bin")
    with open(big, "wb") as f:
        chunk = os.urandom(1 << 20)
        for i in range(20):   # half random, half repetitive: gzip does real work
            f.write(chunk if i % 2 else bytes(range(256)) * 4096)
    return {
        "syscalls (200k getppid + 50k reads)": [loop, "200000", "50000"],
        "python3 -c 'import json'": [PY, "-c", "import json"],
        "gzip -c 20 MB": ["gzip", "-c", big],
    }


def time_native(cmd) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def time_record(cmd, trace_dir) -> tuple[float, int]:
    shutil.rmtree(trace_dir, ignore_errors=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    os.dup2(devnull, 1)            # the tracee inherits our stdout
    try:
        t0 = time.perf_counter()
        res = record(list(cmd), trace_dir)
        elapsed = time.perf_counter() - t0
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
    return elapsed, Trace(trace_dir).manifest["stats"]["syscalls"]


def time_replay(trace_dir) -> float:
    t0 = time.perf_counter()
    res = replay(Trace(trace_dir))
    elapsed = time.perf_counter() - t0
    if res.status != "verified":
        raise SystemExit(f"replay of {trace_dir} did not verify: {res.divergence}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cpu = choose_cpu()
    tmp = tempfile.mkdtemp(prefix="rrverify-bench-")
    try:
        rows = []
        n = 200000
        floors = {"2 stops (entry+exit)": [], "1 stop (emulated)": []}
        for _ in range(args.repeat):
            floors["2 stops (entry+exit)"].append(lib.rrv_bench_ptrace_floor(n, cpu, 0) / n / 1e3)
            floors["1 stop (emulated)"].append(lib.rrv_bench_ptrace_floor(n, cpu, 1) / n / 1e3)
        floor2 = statistics.median(floors["2 stops (entry+exit)"])
        floor1 = statistics.median(floors["1 stop (emulated)"])
        print(f"ptrace floor, pinned to CPU {cpu}: {floor2:.2f} us/syscall with entry+exit stops, "
              f"{floor1:.2f} us/syscall with one stop")
        print()
        print(f"{'workload':40} {'native':>8} {'record':>8} {'replay':>8} {'rec/nat':>8} "
              f"{'rep/rec':>8} {'syscalls':>9} {'rec us/sc':>9} {'vs floor':>8}")
        for name, cmd in workloads(tmp).items():
            trace_dir = os.path.join(tmp, "trace")
            nat, rec, rep = [], [], []
            syscalls = 0
            for _ in range(args.repeat):
                nat.append(time_native(cmd))
                r, syscalls = time_record(cmd, trace_dir)
                rec.append(r)
                rep.append(time_replay(trace_dir))
            nat_m, rec_m, rep_m = (statistics.median(x) for x in (nat, rec, rep))
            per_sc = (rec_m - nat_m) / max(syscalls, 1) * 1e6
            print(f"{name:40} {nat_m:8.3f} {rec_m:8.3f} {rep_m:8.3f} {rec_m / nat_m:8.2f} "
                  f"{rep_m / rec_m:8.2f} {syscalls:9d} {per_sc:9.2f} {per_sc / floor2:8.2f}")
        # The marginal cost: twice the syscalls, the same fixed costs (start-up, exec image,
        # first checkpoint, closing the trace) cancel out.
        loop = workloads(tmp)["syscalls (200k getppid + 50k reads)"]
        double = [loop[0], "400000", "100000"]
        trace_dir = os.path.join(tmp, "trace")
        rec1 = statistics.median(time_record(loop, trace_dir)[0] for _ in range(args.repeat))
        rec2 = statistics.median(time_record(double, trace_dir)[0] for _ in range(args.repeat))
        nat1 = statistics.median(time_native(loop) for _ in range(args.repeat))
        nat2 = statistics.median(time_native(double) for _ in range(args.repeat))
        marginal = ((rec2 - rec1) - (nat2 - nat1)) / 250037 * 1e6
        print()
        print(f"marginal recording cost (250k more syscalls): {marginal:.2f} us/syscall = "
              f"{marginal / floor2:.2f}x the 2-stop floor (target <= 1.2); fixed cost "
              f"{rec1 - nat1 - marginal * 250037 / 1e6:.3f} s")
        print()
        print("rec us/sc: (record - native) / syscalls, the recorder's whole added cost per "
              "syscall, fixed costs included; vs floor: that cost over the 2-stop floor.")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
