"""`rrverify TRACE --workers N`: fan a trace's segments out to Ray workers and aggregate.

An embedded local Ray by default; --address joins a cluster. Workers read the trace from a
path all nodes share, or (--ship) from what the driver sends through the object store. A
worker lost mid-segment is retried on a fresh actor; a segment that still cannot finish is
reported as worker-lost, never dropped."""
from __future__ import annotations

import logging
import os
import sys
import time

from ..checkpoints.pages import PageStoreReader
from ..errors import TraceError, UsageError
from ..replayer.segment import (ERROR, SKIPPED, TRACE_ERROR, VERIFIED, WORKER_LOST,
                                segment_bounds)
from ..trace import Trace
from . import reports


def _ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import ray
    return ray


class Progress:
    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.done, self.bad = total, enabled, 0, 0

    def update(self, report: dict) -> None:
        self.done += 1
        self.bad += report["status"] != VERIFIED
        if self.enabled:
            width = 30
            fill = width * self.done // max(self.total, 1)
            sys.stderr.write(f"\rverifying [{'#' * fill}{'.' * (width - fill)}] "
                             f"{self.done}/{self.total} segments"
                             + (f", {self.bad} failed" if self.bad else "") + " ")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def verify(trace_path: str, *, workers: int, address: str | None = None, ship: bool = False,
           fail_fast: bool = False, retries: int = 2, progress: bool | None = None) -> dict:
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    trace = Trace(os.path.abspath(trace_path))
    bounds = segment_bounds(trace)
    if not bounds:
        raise TraceError(f"{trace.path}: the trace has no checkpoint to verify from")
    ray = _ray()
    from .worker import SegmentVerifier
    from .ship import segment_bundle, shared_bundle

    started_here = not ray.is_initialized()
    if started_here:
        # A local Ray's processes inherit this thread's CPUs: all of them, not one a replay
        # in this process may have pinned it to.
        from ..tracee import ORIGINAL_AFFINITY
        os.sched_setaffinity(0, ORIGINAL_AFFINITY)
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
    t_start = time.monotonic()
    progress_bar = Progress(len(bounds), sys.stderr.isatty() if progress is None else progress)
    actor_options = {"max_restarts": retries, "max_task_retries": retries}
    actors = [SegmentVerifier.options(**actor_options).remote()
              for _ in range(min(workers, len(bounds)))]
    ray.get([a.ready.remote() for a in actors])     # worker processes up: start the clock
    t0 = time.monotonic()
    startup = t0 - t_start
    shared_ref = ray.put(shared_bundle(trace)) if ship else None
    pages = PageStoreReader(trace) if ship else None
    pending = list(reversed(bounds))
    in_flight: dict = {}
    results: list[dict] = []
    stopping: list[int] = []      # segments that failed: with --fail-fast, submit no more

    def submit(actor) -> None:
        while pending and not stopping:
            k, first, end = pending.pop()
            try:
                bundle = segment_bundle(trace, pages, k, first, end) if ship else None
            except (TraceError, ValueError) as e:   # damage met packing it: this segment's
                report = {"segment": k, "first_event": first, "end_event": end,
                          "status": TRACE_ERROR, "error": str(e)}
                results.append(report)
                progress_bar.update(report)
                if fail_fast:
                    stopping.append(k)
                    return
                continue
            ref = actor.verify.remote(trace.path, k, shared_ref, bundle)
            in_flight[ref] = (actor, k, first, end)
            return

    try:
        # Two segments queued per actor: it starts the next while the driver handles a result.
        for _ in range(2):
            for actor in actors:
                if pending:
                    submit(actor)
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            ref = ready[0]
            actor, k, first, end = in_flight.pop(ref)
            try:
                report = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
                report = {"segment": k, "first_event": first, "end_event": end,
                          "status": WORKER_LOST,
                          "error": f"worker lost after {retries} retries: {type(e).__name__}"}
                actor = SegmentVerifier.options(**actor_options).remote()
            except ray.exceptions.RayError as e:    # the worker failed outside the segment
                report = {"segment": k, "first_event": first, "end_event": end,
                          "status": ERROR, "error": str(e).strip().splitlines()[-1][:500]}
            results.append(report)
            progress_bar.update(report)
            if fail_fast and report["status"] != VERIFIED:
                stopping.append(k)
            submit(actor)
        for k, first, end in reversed(pending):
            results.append({"segment": k, "first_event": first, "end_event": end,
                            "status": SKIPPED})
        wall = time.monotonic() - t0
    finally:
        progress_bar.close()
        if started_here:
            ray.shutdown()
    report = reports.aggregate(trace, results, wall_seconds=wall,
                               workers=workers, address=address, ship=ship)
    report["totals"]["startup_seconds"] = round(startup, 3)
    return report
