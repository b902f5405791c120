"""`rrverify demo`: record a bundled workload and verify its replay, end to end."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

from . import tracedirs
from .recorder.record import record
from .replayer.replay import replay
from .replayer.report import format_text
from .trace import Trace

# The bundled workload: a small Python program that reads the clock, draws random bytes,
# hashes, writes and reads a JSON file: the nondeterminism a recording must capture.
WORKLOAD = """
import hashlib, json, os, sys, time
work = sys.argv[1]
seed = os.urandom(16)
data = {"seed": seed.hex(), "started": time.time(),
        "digests": [hashlib.sha256(seed + bytes([i])).hexdigest() for i in range(64)]}
path = os.path.join(work, "demo.json")
with open(path, "w") as f:
    json.dump(data, f)
with open(path) as f:
    back = json.load(f)
os.unlink(path)
print("demo workload: %d digests, seed %s..., round trip %s"
      % (len(back["digests"]), back["seed"][:8], back == data))
"""


def python_binary() -> str:
    return "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def run_demo() -> int:
    trace_dir = tracedirs.new_trace_dir("demo")
    tracedirs.set_latest(trace_dir)
    work = tempfile.mkdtemp(prefix="rrverify-demo-")
    try:
        print(f"recording: python3 -c <demo workload>  ->  {trace_dir}")
        t0 = time.monotonic()
        rec = record([python_binary(), "-c", WORKLOAD, work], trace_dir)
        t_rec = time.monotonic() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"recorded {rec.events} events in {t_rec:.2f} s ({rec.reason})")
    result = replay(Trace(trace_dir))
    if result.status != "verified":
        for line in format_text(result.divergence):
            print(line)
        return 1
    print(f"verified: 1 process, {result.events} events, replayed in {result.seconds:.2f} s "
          f"({result.stats['syscalls_emulated']} syscalls emulated, "
          f"{result.stats['syscalls_executed']} executed)")
    print(f"inspect it: rrverify info {trace_dir}  |  rrverify dump {trace_dir}")
    return 0
