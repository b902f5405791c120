"""What a ptrace stop costs when the tracee runs on the tracer's CPU, and on another CPU.

    python bench/cross_cpu_stops.py [--syscalls 20000] [--runs 5]

A small C program (compiled here with the system gcc) pins itself to a CPU and makes
--syscalls getppid calls; it is recorded with --no-syscallbuf, so every call is a traced
syscall: two ptrace stops (seccomp entry and syscall exit) and an event. It runs once pinned
to the CPU the recorder traces from (the recording's `recorder.cpu`) and once to another,
interleaved, --runs times. The cost of one traced syscall is (recording of N calls - recording
of none) / N, medians. The ratio is what decides where the recorder runs its processes:
FACTS.md measured 7 us against 44 us for a stop; a VM whose idle vCPUs the host must wake
pays more (recorder/record.py: tracee_cpus, docs/scaling.md).
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

from multiprocess import timed     # bench/multiprocess.py: a command's wall time, or exit

PROGRAM = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(atoi(argv[1]), &set);
  if (sched_setaffinity(0, sizeof set, &set)) return 2;
  for (long i = atol(argv[2]); i > 0; i--) syscall(SYS_getppid);
  return 0;
}
"""


def timed_record(rrverify: list[str], program: str, cpu: int, calls: int, out: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    return timed(rrverify + ["record", "--no-syscallbuf", "-o", out, "--", program, str(cpu),
                             str(calls)], cwd=None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--syscalls", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        sys.exit("one CPU: there is no other CPU to compare with")
    rrverify = [sys.executable, "-m", "rrverify"]
    work = tempfile.mkdtemp(prefix="rrverify-bench-cpus-")
    try:
        program = os.path.join(work, "pin_loop")
        subprocess.run(["gcc", "-O1", "-o", program, "-x", "c", "-"], input=PROGRAM.encode(),
                       check=True)
        out = os.path.join(work, "t")
        timed_record(rrverify, program, cpus[0], 0, out)
        with open(os.path.join(out, "manifest.json")) as f:
            tracer = json.load(f)["recorder"]["cpu"]
        other = next(c for c in cpus if c != tracer)
        times = {(cpu, n): [] for cpu in (tracer, other) for n in (0, args.syscalls)}
        for _ in range(args.runs):
            for (cpu, n) in times:
                times[(cpu, n)].append(timed_record(rrverify, program, cpu, n, out))
        med = {k: statistics.median(v) for k, v in times.items()}
        per = {cpu: (med[(cpu, args.syscalls)] - med[(cpu, 0)]) / args.syscalls * 1e6
               for cpu in (tracer, other)}
        print(f"one traced syscall (two ptrace stops and an event), median of {args.runs} runs "
              f"of {args.syscalls} getppid calls:")
        print(f"  tracee on the tracer's CPU ({tracer}): {per[tracer]:6.1f} us")
        print(f"  tracee on another CPU ({other}):      {per[other]:6.1f} us   "
              f"({per[other] / per[tracer]:.1f}x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
