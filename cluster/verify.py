"""`rrverify TRACE --workers N`: fan a trace's segments out to Ray workers and aggregate.

An embedded local Ray by default; --address joins a cluster. Workers read the trace from a
path all nodes share, or (--ship) from what the driver sends through the object store. A
worker lost mid-segment is retried on a fresh actor; a segment that still cannot finish is
reported as worker-lost, never dropped. A segment without a result after --segment-timeout is
reported as timeout, and its worker killed and replaced."""
from __future__ import annotations

import logging
import os
import socket
import sys
import time
from dataclasses import dataclass

from ..checkpoints.pages import PageStoreReader
from ..errors import TraceError, UsageError
from ..replayer.segment import (ERROR, SKIPPED, TIMEOUT, TRACE_ERROR, VERIFIED, WORKER_LOST,
                                segment_bounds)
from ..trace import Trace
from . import reports


def _ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import ray
    return ray


@dataclass
class InFlight:
    actor: object
    k: int
    first: int
    end: int
    started: float | None        # None: queued behind another segment on its actor


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


PROBE_SECONDS = 5       # to reach --address, before Ray itself tries (for minutes)
GCS_TRIES = 8           # Ray's attempts to reach a GCS there, about a second each


def join(ray, address: str) -> None:
    """Join the cluster at address, or fail with one line: in seconds when nothing answers
    there, or nothing that speaks gRPC (Ray would hang on it), and when Ray gives up."""
    try:
        import grpc
    except ImportError:
        if address.startswith("ray://"):
            raise UsageError(f"--address {address}: ray:// needs Ray's client: "
                             f"pip install 'ray[client]'") from None
        grpc = None
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if host and port.isdigit():
        try:
            socket.create_connection((host.strip("[]"), int(port)), PROBE_SECONDS).close()
        except OSError as e:
            why = "no answer in %d s" % PROBE_SECONDS if isinstance(e, TimeoutError) else e.strerror
            raise UsageError(f"--address {address}: cannot reach {host}:{port}: {why or e}") \
                from None
        if grpc is not None and os.environ.get("RAY_USE_TLS", "0").lower() in ("0", "false"):
            channel = grpc.insecure_channel(hostport)
            try:
                grpc.channel_ready_future(channel).result(timeout=PROBE_SECONDS)
            except grpc.FutureTimeoutError:
                raise UsageError(f"--address {address}: {host}:{port} answers, but not as a Ray "
                                 f"cluster (no gRPC there in {PROBE_SECONDS} s)") from None
            finally:
                channel.close()
    # What answers but is no Ray GCS: Ray tries once a second, 20 times by default.
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", str(GCS_TRIES))
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except ConnectionError as e:    # its message can hold the server's traceback: one line
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [repr(e)]
        why = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
        raise UsageError(f"--address {address}: no Ray cluster answers there: {why}") from None


def verify(trace_path: str, *, workers: int, address: str | None = None, ship: bool = False,
           fail_fast: bool = False, retries: int = 2, segment_timeout: float = 600.0,
           progress: bool | None = None) -> dict:
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
            join(ray, address)
        else:   # "local": a new Ray, even if one was started on this machine (`ray start`)
            ray.init(address="local", num_cpus=workers, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING)
    t_start = time.monotonic()
    progress_bar = Progress(len(bounds), sys.stderr.isatty() if progress is None else progress)
    actor_options = {"max_restarts": retries, "max_task_retries": retries}
    # Worker processes up: start the clock. A cluster with fewer free CPUs than --workers
    # starts fewer: go on with those that started within --segment-timeout.
    starting = {a.ready.remote(): a for a in (SegmentVerifier.options(**actor_options).remote()
                                             for _ in range(min(workers, len(bounds))))}
    up, late = ray.wait(list(starting), num_returns=len(starting), timeout=segment_timeout)
    for ref in late:
        ray.kill(starting[ref], no_restart=True)
    if not up:
        raise UsageError(f"no Ray worker started within {segment_timeout:g} s "
                         f"(--segment-timeout): the cluster has no free CPU for one")
    if late:
        print(f"rrverify: {len(up)} of {len(starting)} workers started within "
              f"{segment_timeout:g} s (--segment-timeout); going on with {len(up)}",
              file=sys.stderr)
    ray.get(up)
    actors = [starting[ref] for ref in up]
    t0 = time.monotonic()
    startup = t0 - t_start
    shared_ref = ray.put(shared_bundle(trace)) if ship else None
    pages = PageStoreReader(trace) if ship else None
    pending = list(reversed(bounds))
    in_flight: dict[object, InFlight] = {}
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
            # A segment's clock starts when its actor starts it: now, or when the one queued
            # before it on the same actor finishes.
            busy = any(f.actor is actor for f in in_flight.values())
            in_flight[ref] = InFlight(actor, k, first, end, None if busy else time.monotonic())
            return

    def overdue() -> tuple:
        """The segment past its deadline: reported, its actor killed and replaced, and the
        segments queued behind it handed out again."""
        ref = min((r for r in in_flight if in_flight[r].started is not None),
                  key=lambda r: in_flight[r].started)
        f = in_flight.pop(ref)
        ray.kill(f.actor, no_restart=True)
        for r in [r for r, q in in_flight.items() if q.actor is f.actor]:
            q = in_flight.pop(r)
            pending.append((q.k, q.first, q.end))
        report = {"segment": f.k, "first_event": f.first, "end_event": f.end, "status": TIMEOUT,
                  "seconds": round(time.monotonic() - f.started, 3),
                  "error": f"no result after {segment_timeout:g} s (--segment-timeout); "
                           f"its worker was killed"}
        return report, fresh_actor()

    def fresh_actor():
        """A replacement, started before it is handed a segment: its start-up (seconds on a
        loaded machine) is not counted in that segment's time."""
        actor = SegmentVerifier.options(**actor_options).remote()
        ray.wait([actor.ready.remote()], timeout=segment_timeout)
        return actor

    try:
        # Two segments queued per actor: it starts the next while the driver handles a result.
        for _ in range(2):
            for actor in actors:
                if pending:
                    submit(actor)
        while in_flight:
            starts = [f.started for f in in_flight.values() if f.started is not None]
            wait = max(0.0, min(starts) + segment_timeout - time.monotonic()) if starts else None
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=wait)
            if not ready:
                report, actor = overdue()
            else:
                f = in_flight.pop(ready[0])
                actor, k, first, end = f.actor, f.k, f.first, f.end
                for q in in_flight.values():
                    if q.actor is actor:
                        q.started = time.monotonic()
                try:
                    report = ray.get(ready[0])
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
                    report = {"segment": k, "first_event": first, "end_event": end,
                              "status": WORKER_LOST,
                              "error": f"worker lost after {retries} retries: {type(e).__name__}"}
                    actor = fresh_actor()
                except ray.exceptions.RayError as e:    # the worker failed outside the segment
                    report = {"segment": k, "first_event": first, "end_event": end,
                              "status": ERROR, "error": str(e).strip().splitlines()[-1][:500]}
            results.append(report)
            progress_bar.update(report)
            if fail_fast and report["status"] != VERIFIED:
                stopping.append(report["segment"])
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
    report["workers_started"] = len(actors)
    return report
