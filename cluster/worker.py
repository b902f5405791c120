"""The Ray side: a small actor per worker CPU that verifies segments one at a time."""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import time

import ray

from ..replayer.segment import verify_segment
from .cpuslot import claim_cpu
from .ship import materialize

# Fault injection for the test suite: "SEGMENT:MARKER_FILE" makes the worker that first picks
# up SEGMENT die by SIGKILL, as a lost node would, or hang, as a stuck replay would (once: it
# leaves MARKER_FILE behind).
KILL_ENV = "RRVERIFY_TEST_KILL_WORKER"
HANG_ENV = "RRVERIFY_TEST_HANG_WORKER"


def _fault(env: str, k: int) -> bool:
    spec = os.environ.get(env, "")
    if spec.startswith(f"{k}:"):
        marker = spec.split(":", 1)[1]
        if not os.path.exists(marker):
            open(marker, "w").close()
            return True
    return False


@ray.remote(num_cpus=1)
class SegmentVerifier:
    def __init__(self):
        self.cpu = claim_cpu()
        self.shipped_root = None
        self.cache: dict = {}

    def ready(self) -> int:
        return self.cpu

    def verify(self, trace_path: str, k: int, shared=None, bundle=None) -> dict:
        if _fault(KILL_ENV, k):
            os.kill(os.getpid(), signal.SIGKILL)
        if _fault(HANG_ENV, k):
            while True:
                time.sleep(3600)
        if shared is None:
            return verify_segment(trace_path, k, cpu=self.cpu, cache=self.cache)
        if self.shipped_root is None:
            self.shipped_root = materialize(shared, bundle)
            atexit.register(shutil.rmtree, self.shipped_root, True)
        else:
            materialize(shared, bundle, self.shipped_root)
        return verify_segment(self.shipped_root, k, cpu=self.cpu, cache=self.cache,
                              shown_path=trace_path)
