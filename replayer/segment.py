"""Segment verification: restore checkpoint k, replay to checkpoint k+1 (or the trace's end),
run every check, and return a plain report value, errors included (never an exception)."""
from __future__ import annotations

import os
import socket
import time
import traceback

from ..checkpoints.pages import PageStoreReader
from ..errors import RRVerifyError, TraceError
from ..trace import Trace
from .crossprocess import segment_facts
from .replay import replay, segment_checkpoints
from .report import with_segment

VERIFIED, DIVERGED, TRACE_ERROR = "verified", "diverged", "trace-error"
INCOMPATIBLE, WORKER_LOST, ERROR, SKIPPED = "incompatible-worker", "worker-lost", "error", "skipped"
TIMEOUT = "timeout"
STATUSES = (VERIFIED, DIVERGED, TRACE_ERROR, INCOMPATIBLE, WORKER_LOST, TIMEOUT, ERROR, SKIPPED)


def segment_bounds(trace: Trace) -> list[tuple[int, int, int]]:
    """(segment, first event, end event) for each segment, in its process's stream: from
    checkpoint k to the process's next checkpoint, or to the end of its stream."""
    cps = trace.checkpoints
    bounds = []
    for c in trace.segments:
        _, nxt = segment_checkpoints(trace, c["id"])
        bounds.append((c["id"], c["event"], cps[nxt]["event"] if nxt is not None
                       else trace.stream(c["process"]).event_count))
    return bounds


def verify_segment(trace_path: str, k: int, *, cpu: int | None = None,
                   check_cpu: bool = True, cache: dict | None = None,
                   shown_path: str | None = None) -> dict:
    """cache: a dict the caller keeps across segments of the same trace (a worker does):
    it holds the trace's page store reader, so pages shared by checkpoints are read once.
    shown_path: the trace's name in the report, when trace_path is a local copy (--ship)."""
    shown = shown_path or trace_path
    t0 = time.monotonic()
    report = {"segment": k, "status": ERROR, "host": socket.gethostname(),
              "worker_pid": os.getpid(),
              "cpu": cpu}
    try:
        trace = Trace(trace_path)
        start, last = segment_checkpoints(trace, k)
        process = trace.checkpoints[k]["process"]
        stream = trace.stream(process)
        first = trace.checkpoints[k]["event"]
        end = trace.checkpoints[last]["event"] if last is not None else stream.event_count
        report.update(process=process, pid=stream.row["pid"], first_event=first,
                      end_event=end)
        if check_cpu:
            from ..cluster.compat import incompatibilities, rlimit_shortfalls
            problems = incompatibilities(trace.manifest["host"]) + rlimit_shortfalls(trace.manifest)
            if problems:
                report.update(status=INCOMPATIBLE, error="; ".join(problems[:4]))
                return report
        pages = None
        if cache is not None:
            key = (trace.path, trace.manifest.get("uuid"))
            if cache.get("key") != key:
                cache.clear()
                cache.update(key=key, pages=PageStoreReader(trace))
            pages = cache["pages"]
        res = replay(trace, start=start, end=last, cpu=cpu, pages=pages)
        report.update(status=res.status, events=res.events, replay_seconds=round(res.seconds, 6),
                      stats=res.stats)
        if res.exit_status is not None:
            report["exit_status"] = res.exit_status
        # What the cross-process checks join (crossprocess.py): the facts of the events this
        # replay checked (a diverged one's, up to its divergence).
        report["facts"] = segment_facts(trace, process, first, res.end_event)
        if res.divergence:
            report["divergence"] = with_segment(res.divergence, k, shown)
        if res.invariant_violations:
            report["syscallbuf_invariant_violations"] = [
                with_segment(v, k, shown) for v in res.invariant_violations]
    except TraceError as e:
        report.update(status=TRACE_ERROR, error=str(e))
    except RRVerifyError as e:
        report.update(status=ERROR, error=str(e))
    except Exception as e:  # noqa: BLE001 -- a worker reports, it does not crash the batch
        report.update(status=ERROR, error=f"internal error: {e!r}",
                      traceback=traceback.format_exc(limit=8))
    finally:
        report["seconds"] = round(time.monotonic() - t0, 6)
        if "error" in report and shown != trace_path:
            report["error"] = report["error"].replace(trace_path, shown)
    return report
