"""One CPU per worker on a node: a worker claims a CPU by holding a lock file for it, so a
replayer and its tracee stay pinned to a CPU of their own (FACTS: a cross-CPU ptrace stop costs
about six times a same-CPU one, and two replays on one CPU halve each other)."""
from __future__ import annotations

import fcntl
import os
import tempfile

_held: list[int] = []


def claim_cpu() -> int:
    allowed = sorted(os.sched_getaffinity(0))
    lockdir = os.path.join(tempfile.gettempdir(), "rrverify-cpus")
    os.makedirs(lockdir, exist_ok=True)
    for cpu in allowed:
        fd = os.open(os.path.join(lockdir, f"cpu{cpu}.lock"), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _held.append(fd)          # released when this process exits
        return cpu
    return allowed[os.getpid() % len(allowed)]   # more workers than CPUs: share
