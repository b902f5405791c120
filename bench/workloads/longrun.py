"""A long-running workload for checkpointed verification: its memory keeps changing (a growing
table, a rewritten buffer), it does file I/O and reads the clock and random bytes.

    python3 longrun.py [ITERATIONS] [WORKDIR]
"""
import hashlib
import os
import sys
import tempfile
import time

iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
workdir = sys.argv[2] if len(sys.argv) > 2 else tempfile.gettempdir()
path = os.path.join(workdir, f"longrun-{os.getpid()}.log")

table = {}
buffer = bytearray(256 * 1024)
h = hashlib.sha256()
with open(path, "w") as log:
    for i in range(iterations):
        table[i] = hashlib.sha1(str(i).encode()).hexdigest() * 4
        start = (i * 4099) % (len(buffer) - 64)
        buffer[start:start + 64] = os.urandom(64)
        h.update(buffer[start:start + 64])
        if i % 5 == 0:
            log.write(f"{i} {time.time():.6f} {len(table)}\n")
            log.flush()
            os.stat(path)
with open(path) as f:
    lines = sum(1 for _ in f)
os.unlink(path)
print(f"longrun: {iterations} iterations, {lines} log lines, table {len(table)}, "
      f"digest {h.hexdigest()[:16]}")
