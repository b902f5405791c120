"""What a checkpoint costs as a process's reserved memory grows, measured side by side.

    python bench/checkpoint_cost.py [--runs 3] [--sizes 128,1024,4096]

tests/programs/reserve.c maps N MiB of anonymous memory and touches 17 pages of it, as
runtimes reserve their heaps, then makes 3000 getppid() calls; it is recorded with
--no-syscallbuf and a checkpoint every 500 events (so about 7 checkpoints) and replayed. For
each size, the medians of:
- the time a checkpoint stops the recorder (stats.checkpoint_seconds / checkpoints: reading
  the stopped process);
- the finisher's time per checkpoint (stats.checkpoint_finish_seconds / checkpoints: digests
  and storing, on another CPU);
- recording and `rrverify replay` wall times (replay compares memory at each checkpoint).
A checkpoint reads only the pages the process touched (pagemap), so the costs should not grow
with the reserved size: the ratios to the smallest size are printed. Nothing is asserted.
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

HERE = os.path.dirname(os.path.abspath(__file__))
RRVERIFY = [sys.executable, "-m", "rrverify"]


def timed(cmd: list[str]) -> float:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {proc.stderr.decode()[-500:]}")
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="128,1024,4096", help="MiB reserved, comma-separated")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "reserve")
        subprocess.run(["gcc", "-O1", "-o", exe,
                        os.path.join(HERE, "..", "tests", "programs", "reserve.c")], check=True)
        rows = {}
        for size in sizes:
            got = {"stop": [], "finish": [], "record": [], "replay": []}
            trace = os.path.join(tmp, f"t{size}")
            for _ in range(args.runs):
                shutil.rmtree(trace, ignore_errors=True)
                got["record"].append(timed(RRVERIFY + [
                    "record", "--no-syscallbuf", "--checkpoint-every", "500", "-o", trace, "--",
                    exe, "/etc/passwd", str(size)]))
                with open(os.path.join(trace, "manifest.json")) as f:
                    stats = json.load(f)["stats"]
                n = max(1, stats["checkpoints"])
                got["stop"].append(stats["checkpoint_seconds"] / n)
                got["finish"].append(stats["checkpoint_finish_seconds"] / n)
                got["replay"].append(timed(RRVERIFY + ["replay", trace]))
            rows[size] = {k: statistics.median(v) for k, v in got.items()}
        base = rows[sizes[0]]
        print(f"reserve.c, median of {args.runs} runs (ratios to {sizes[0]} MiB reserved)")
        print(f"{'reserved':>10} {'stop/ckpt':>14} {'finish/ckpt':>14} {'record':>14} "
              f"{'replay':>14}")
        for size, r in rows.items():
            cells = [f"{r[k] * (1e3 if k in ('stop', 'finish') else 1):8.2f}"
                     f"{'ms' if k in ('stop', 'finish') else ' s'} {r[k] / base[k]:4.1f}x"
                     for k in ("stop", "finish", "record", "replay")]
            print(f"{size:>6} MiB " + " ".join(f"{c:>14}" for c in cells))


if __name__ == "__main__":
    main()
