"""Parallel verification, measured side by side in one run.

    python bench/parallel_verify.py [--iterations 6000] [--every 300]

Records bench/workloads/longrun.py with a checkpoint every --every events (>= 32 segments) and
without checkpoints, then verifies the trace sequentially (one process, start to end), with
--workers 1 and with --workers 2 on an embedded Ray. Prints speedup, parallel efficiency,
Ray's overhead per segment, checkpoint store bytes against the raw memory the checkpoints
cover, recording time with and without checkpoints, and the per-segment costs
docs/scaling.md models a 64-worker cluster from.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

from rrverify.checkpoints.pages import FROM_CHUNK, INDEX_MAGIC, RECORD, ZERO
from rrverify.cluster.verify import verify
from rrverify.recorder.record import record
from rrverify.replayer.replay import replay
from rrverify.trace import Trace

HERE = os.path.dirname(os.path.abspath(__file__))
LONGRUN = os.path.join(HERE, "workloads", "longrun.py")
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def quiet_record(argv, trace_dir, **kw) -> float:
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    os.dup2(devnull, 1)
    try:
        t0 = time.perf_counter()
        record(argv, trace_dir, **kw)
        return time.perf_counter() - t0
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def store_sizes(trace_dir: str) -> tuple[int, int, int]:
    """(bytes of stored page chunks, raw bytes of memory the checkpoints cover, non-zero raw)."""
    t = Trace(trace_dir)
    with open(os.path.join(trace_dir, "pages.idx"), "rb") as f:
        data = f.read()[len(INDEX_MAGIC):]
    chunks = {blob for _, kind, blob, _ in (RECORD.unpack_from(data, o)
                                            for o in range(0, len(data), RECORD.size))
              if kind == FROM_CHUNK}
    stored = 0
    for blob in chunks:
        h = blob.hex()
        stored += os.path.getsize(os.path.join(trace_dir, "blobs", h[:2], h + ".zst"))
    raw = nonzero = 0
    for k in range(len(t.checkpoints)):
        ck = t.checkpoint(k)
        pm = t.blob(ck["pagemap_blob"])
        stored += len(pm) // 8   # the pagemap itself, compressed about 2:1
        raw += len(pm) // 16 * 4096
        nonzero += sum(pm[i:i + 16] != ZERO for i in range(0, len(pm), 16)) * 4096
    return stored, raw, nonzero


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=6000)
    ap.add_argument("--every", type=int, default=300)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rrverify-pbench-")
    try:
        argv = [PY, LONGRUN, str(args.iterations), tmp]
        plain = os.path.join(tmp, "plain")
        t_plain = quiet_record(argv, plain, checkpoint_every=0, checkpoint_interval=0)
        trace_dir = os.path.join(tmp, "trace")
        t_ckpt = quiet_record(argv, trace_dir, checkpoint_every=args.every, checkpoint_interval=0)
        trace = Trace(trace_dir)
        n = len(trace.checkpoints)
        stats = trace.manifest["stats"]
        print(f"workload: longrun.py {args.iterations}: {trace.event_count} events, {n} segments "
              f"(checkpoint every {args.every} events)")
        print(f"recording: {t_plain:.2f} s without checkpoints, {t_ckpt:.2f} s with "
              f"({t_ckpt / t_plain:.2f}x; capture {stats['checkpoint_seconds']:.2f} s, "
              f"{stats['checkpoint_seconds'] / n * 1e3:.1f} ms per checkpoint)")
        stored, raw, nonzero = store_sizes(trace_dir)
        print(f"checkpoint store: {stored / 1e6:.1f} MB for {raw / 1e6:.1f} MB of memory covered "
              f"({stored / raw:.1%}; {nonzero / 1e6:.1f} MB of it non-zero)")

        t0 = time.perf_counter()
        seq = replay(trace)
        t_seq = time.perf_counter() - t0
        assert seq.status == "verified", seq.divergence
        print(f"sequential replay: {t_seq:.2f} s ({seq.checkpoints_compared} checkpoints compared)")

        runs = {}
        for workers in (1, 2):
            report = verify(trace_dir, workers=workers, progress=False)
            assert report["status"] == "verified", report["totals"]
            runs[workers] = report["totals"]
            t = report["totals"]
            print(f"--workers {workers}: {t['wall_seconds']:.2f} s wall "
                  f"(Ray start {t['startup_seconds']:.2f} s, not counted), "
                  f"{t['segment_seconds']:.2f} s of segment work")
        w1, w2 = runs[1], runs[2]
        last = verify(trace_dir, workers=2, progress=False)["segments"]
        seg = [s["seconds"] for s in last]
        restores = [s["stats"]["restore_seconds"] for s in last]
        compares = [s["stats"]["compare_seconds"] for s in last if s["stats"]["compare_seconds"]]
        overhead = (w1["wall_seconds"] - w1["segment_seconds"]) / n
        print()
        print(f"speedup 2 workers vs 1:     {w1['wall_seconds'] / w2['wall_seconds']:.2f}x "
              f"(parallel efficiency {w1['wall_seconds'] / w2['wall_seconds'] / 2:.0%})")
        print(f"speedup 2 workers vs sequential replay: {t_seq / w2['wall_seconds']:.2f}x")
        print(f"Ray overhead per segment:   {overhead * 1e3:.1f} ms")
        print(f"restore per segment: median {statistics.median(restores) * 1e3:.0f} ms; compare: "
              f"median {statistics.median(compares) * 1e3:.0f} ms")
        print(f"per segment: median {statistics.median(seg) * 1e3:.0f} ms, max "
              f"{max(seg) * 1e3:.0f} ms for {args.every} events "
              f"({statistics.median(seg) / args.every * 1e6:.0f} us per event incl. restore and "
              f"compare)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
