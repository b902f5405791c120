"""`rrverify demo`: record a bundled workload and verify its replay, end to end."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

from . import tracedirs
from .recorder.record import record

# The bundled workload: a small Python program that reads the clock, draws random bytes,
# hashes, writes and reads a JSON file (the nondeterminism a recording must capture), then
# pipes its digests through a shell pipeline (processes of their own, each verified on its own
# and against each other).
WORKLOAD = """
import hashlib, json, os, subprocess, sys, time
work = sys.argv[1]
seed = os.urandom(16)
rounds = []
for r in range(40):
    data = {"seed": seed.hex(), "round": r, "at": time.time(),
            "digests": [hashlib.sha256(seed + bytes([r, i])).hexdigest() for i in range(64)]}
    path = os.path.join(work, "demo-%d.json" % r)
    with open(path, "w") as f:
        json.dump(data, f)
    with open(path) as f:
        rounds.append(json.load(f) == data)
    os.unlink(path)
heads = "\\n".join(d[:1] for r in range(40) for d in
                   [hashlib.sha256(seed + bytes([r, i])).hexdigest() for i in range(64)])
top = subprocess.run("sort | uniq -c | sort -rn | head -1", shell=True, input=heads.encode(),
                     capture_output=True, check=True).stdout.split()
print("demo workload: %d rounds, seed %s..., all round trips %s, most common first hex digit "
      "%s (%s times)" % (len(rounds), seed.hex()[:8], all(rounds), top[1].decode(),
                         top[0].decode()))
"""


def python_binary() -> str:
    return "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def run_demo(workers: int | None = None) -> int:
    """Record the bundled workload with a checkpoint every 300 events, then verify its
    segments in parallel on an embedded local Ray."""
    from .cluster.reports import summary_lines
    from .cluster.verify import verify
    workers = workers or max(2, len(os.sched_getaffinity(0)))
    trace_dir = tracedirs.new_trace_dir("demo")
    work = tempfile.mkdtemp(prefix="rrverify-demo-")
    try:
        print(f"recording: python3 -c <demo workload>  ->  {trace_dir}")
        t0 = time.monotonic()
        rec = record([python_binary(), "-c", WORKLOAD, work], trace_dir, checkpoint_every=300)
        t_rec = time.monotonic() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
        tracedirs.settle(trace_dir, made=True, latest=True)
    print(f"recorded {rec.events} events and {rec.checkpoints} checkpoints in {t_rec:.2f} s "
          f"({rec.reason})")
    print(f"verifying {rec.checkpoints} segments on a local Ray with {workers} workers...")
    report = verify(trace_dir, workers=workers)
    for line in summary_lines(report):
        print(line)
    print(f"inspect it: rrverify info {trace_dir}  |  rrverify dump {trace_dir}")
    return 0 if report["status"] == "verified" else 1
