"""A verification worker's own memory, next to the size of the process it restores and compares.

    python bench/worker_memory.py [--mib 512]

Records bench/workloads/bigmem.c (a process of --mib MiB of distinct pages that then exits), then
replays each of its two segments in a fresh Python process and prints that process's peak
resident memory (VmHWM; the replayed process, a child, is not included): segment 0 restores a
small checkpoint and compares the big final one, segment 1 restores the big one. Restore and
comparison stream memory in runs of at most checkpoints/capture.py: CHUNK_PAGES pages, and the
page store reader's caches are bounded (checkpoints/pages.py), so the ratio should stay well
below 1 (it was 2.5 when regions were read and written whole).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

MEASURE = """
import sys
from rrverify.trace import Trace
from rrverify.replayer.replay import replay
t = Trace(sys.argv[1])
k = int(sys.argv[2])
end = k + 1 if k + 1 < len(t.checkpoints) else None
res = replay(t, start=k, end=end)
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(res.status, int(hwm.split()[1]) // 1024)
"""


def baseline_mib() -> int:
    """The peak of a Python that only imports what a replay imports."""
    out = subprocess.run([sys.executable, "-c", "import rrverify.replayer.replay\n"
                          "print(next(l for l in open('/proc/self/status') "
                          "if l.startswith('VmHWM')).split()[1])"],
                         capture_output=True, text=True, check=True).stdout
    return int(out) // 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=512)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "bigmem")
        subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(HERE, "workloads", "bigmem.c")],
                       check=True)
        trace = os.path.join(tmp, "t")
        subprocess.run([sys.executable, "-m", "rrverify", "record", "-o", trace,
                        "--checkpoint-interval", "0", "--", exe, str(args.mib)],
                       check=True, capture_output=True)
        base = baseline_mib()
        print(f"process: {args.mib} MiB of distinct pages; a Python with rrverify imported: "
              f"{base} MiB")
        for k, what in ((0, "restores the small checkpoint 0, compares the final one"),
                        (1, "restores the final checkpoint")):
            out = subprocess.run([sys.executable, "-c", MEASURE, trace, str(k)],
                                 capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"segment {k}: {out.stderr.strip().splitlines()[-1]}")
            status, peak = out.stdout.split()
            print(f"segment {k} ({what}): {status}, worker peak {peak} MiB, "
                  f"{int(peak) - base} MiB above the baseline = "
                  f"{(int(peak) - base) / args.mib:.2f}x the process")


if __name__ == "__main__":
    main()
