"""The replay driver: restores a checkpoint into a fresh process, feeds the native replay loop
the trace's event frames from there, and compares the replayed state with every later
checkpoint it reaches. A whole-trace replay starts at checkpoint 0; a segment replay runs from
checkpoint k to checkpoint k+1 (cluster/ fans segments out)."""
from __future__ import annotations

import bisect
import os
import time
from dataclasses import dataclass, field

from .. import events as E
from .. import exec_image
from .._native import ffi, lib
from ..checkpoints.compare import compare
from ..checkpoints.pages import PageStoreReader
from ..checkpoints.inject import TraceeMemory, VerifierSite, make_file_memfd, put_back_segv
from ..checkpoints.restore import restore
from ..errors import NativeError, TraceError
from ..trace import Stream, Trace
from ..tracee import CallbackTarget, choose_cpu
from . import report as R
from .syscallbuf_invariant import check_replayed


@dataclass
class ReplayResult:
    status: str                 # "verified" | "diverged"
    events: int                 # events checked (the divergent one included)
    trace_events: int
    complete_trace: bool
    first_event: int = 0
    end_event: int = 0          # the event replay stopped before
    checkpoints_compared: int = 0
    exit_status: int | None = None
    process: int = 0
    pid: int = 0                # the process's recorded pid
    divergence: dict | None = None
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0
    invariant_violations: list = field(default_factory=list)   # syscallbuf_invariant.py


class Replayer(CallbackTarget):
    """What the native loop calls back for: blobs and mapped files, from the trace only."""

    def __init__(self, trace: Trace):
        super().__init__()
        self.trace = trace
        self._last_blob: bytes | None = None
        self.mappings: list[tuple[int, int, int, int]] = []   # start, end, file index, offset
        self.file_fds: dict[int, int] = {}    # file index -> the tracee's memfd of it

    def blob_get(self, digest: bytes) -> bytes:
        # The native loop writes a blob into the tracee at once: keep only the latest alive.
        self._last_blob = self.trace.blob(digest)
        return self._last_blob

    def file_fd(self, index: int, addr: int, length: int, offset: int) -> int:
        """The tracee's memfd of recorded file `index`, or -1: the driver makes it first
        (RRV_STOP_FILE_FD) and the mmap is issued again."""
        if not 0 <= index < len(self.trace.files):
            raise TraceError(f"{self.trace.path}: mapped file #{index} is not in files.jsonl")
        fd = self.file_fds.get(index, -1)
        if fd >= 0:
            self.mappings.append((addr, addr + length, index, offset))
        return fd

    def file(self, index: int) -> bytes:
        """A mapped file's whole content (for symbolizing), or b"" if the trace holds only a
        range of it."""
        f = exec_image.recorded_file(self.trace, index)
        return f.data if f.whole else b""

    def restored(self, ckpt: dict) -> None:
        """A fresh process from ckpt: it holds no memfd of ours yet; its file-backed regions
        are known for symbolizing reports."""
        self.file_fds = {}
        self.mappings = [(r["start"], r["end"], r["file"], r["offset"])
                         for r in ckpt["regions"] if "file" in r]


class EventFeed:
    """Hands the native loop a contiguous buffer: the unconsumed tail plus the next frame of
    one process's stream."""

    def __init__(self, trace: Stream, state):
        self.trace = trace
        self.state = state
        self.buf = b""
        self.cdata = None
        self.next_frame = len(trace.frames)

    def _install(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.cdata = ffi.from_buffer(buf)
        self.state.events = self.cdata
        self.state.len = len(buf)
        self.state.pos = pos

    def seek(self, event: int) -> None:
        frames = self.trace.frames
        i = bisect.bisect_right([f.first_event for f in frames], event) - 1
        if i < 0 or event >= frames[i].first_event + frames[i].events:
            raise TraceError(f"{self.trace.path}: event {event} is not in the trace's frames")
        raw = self.trace.read_frame(frames[i])
        pos, index = 0, frames[i].first_event
        while index < event:
            pos += E.decode_at(raw, pos, index).size
            index += 1
        self.next_frame = i + 1
        self.state.eof = 0
        self.state.event_index = event
        self._install(raw, pos)

    def refill(self) -> None:
        tail = self.buf[self.state.pos:]
        if self.next_frame >= len(self.trace.frames):
            self.state.eof = 1
            self._install(tail, 0)
            return
        raw = self.trace.read_frame(self.trace.frames[self.next_frame])
        self.next_frame += 1
        self._install(tail + raw, 0)

    def current(self) -> E.Event:
        return E.decode_at(self.buf, self.state.pos, self.state.event_index)

    def skip_current(self) -> E.Event:
        ev = self.current()
        self.state.pos += ev.size
        self.state.event_index += 1
        return ev

    def exhausted(self) -> bool:
        return self.state.pos == len(self.buf) and self.next_frame >= len(self.trace.frames)


def segment_checkpoints(trace: Trace, k: int) -> tuple[int, int | None]:
    """Segment k runs from checkpoint k to its process's next checkpoint, the process's last
    one to the end of its stream."""
    cps = trace.segments
    ids = [c["id"] for c in cps]
    if k not in ids:
        raise TraceError(f"{trace.path}: no segment {k} (the trace has segments "
                         f"{_ranges(ids)})")
    process = trace.checkpoints[k]["process"]
    later = [c["id"] for c in cps if c["id"] > k and c["process"] == process]
    return k, (later[0] if later else None)


def _ranges(ids: list[int]) -> str:
    """0 to 9, 12 to 14"""
    out, start = [], None
    for i, n in enumerate(ids):
        if start is None:
            start = n
        if i + 1 == len(ids) or ids[i + 1] != n + 1:
            out.append(f"{start}" if start == n else f"{start} to {n}")
            start = None
    return ", ".join(out) or "none"


def replay(trace: Trace, *, start: int = 0, end: int | None = None, echo: bool = False,
           cpu: int | None = None, pages: PageStoreReader | None = None) -> ReplayResult:
    """Replay one process from checkpoint `start` until its checkpoint `end` (None: the end of
    its stream), comparing with every checkpoint of its reached. start and end are checkpoint
    ids; both belong to the same process. The calling thread, pinned to `cpu` meanwhile (the
    restored process's tracer), gets its CPUs back."""
    caller_cpus = os.sched_getaffinity(0)
    try:
        return _replay(trace, start=start, end=end, echo=echo, cpu=cpu, pages=pages)
    finally:
        os.sched_setaffinity(0, caller_cpus)


def _replay(trace: Trace, *, start: int, end: int | None, echo: bool, cpu: int | None,
            pages: PageStoreReader | None) -> ReplayResult:
    if not trace.segments:
        raise TraceError(f"{trace.path}: the trace has no checkpoint to start replay from "
                         f"(the recording ended before its first)")
    every = {c["id"]: c for c in trace.segments}
    if start not in every or (end is not None and not (
            end in every and start < end and every[end]["process"] == every[start]["process"])):
        raise TraceError(f"{trace.path}: no segment from checkpoint {start} to {end} "
                         f"(the trace has {len(trace.checkpoints)} checkpoints)")
    process = every[start]["process"]
    stream = trace.stream(process)
    checkpoints = stream.checkpoints      # this process's chain; below, positions in it
    ids = [c["id"] for c in checkpoints]
    start = ids.index(start)
    end = None if end is None else ids.index(end)
    cpu = choose_cpu() if cpu is None else cpu
    t0 = time.monotonic()
    rp = Replayer(trace)
    pages = pages or PageStoreReader(trace)
    state = ffi.new("struct rrv_replayer *")
    state.handle = rp.handle
    state.echo = int(echo)
    feed = EventFeed(stream, state)
    compared = 0
    notes: dict = {}
    timing = {"restore_seconds": 0.0, "compare_seconds": 0.0}

    def start_from(k: int) -> int:
        ckpt = trace.checkpoint(ids[k])
        t = time.monotonic()
        pid = restore(trace, ckpt, cpu=cpu, pages=pages)
        timing["restore_seconds"] += time.monotonic() - t
        rp.restored(ckpt)
        lib.rrv_replay_set_pid(state, pid)
        return pid

    def stop_at(k: int) -> None:
        state.stop_at_event = checkpoints[k]["event"] if k < len(checkpoints) else 0
        state.stop_before_exit = k < len(checkpoints) and trace.checkpoint(ids[k])["before_exit"]

    def result(status, **kw) -> ReplayResult:
        if status == "verified":
            expected = checkpoints[end]["event"] if end is not None else stream.event_count
            if state.event_index != expected:   # a structural lie, never "verified"
                raise TraceError(f"{trace.path}: replay from event {checkpoints[start]['event']} "
                                 f"ended at event {state.event_index}, but the "
                                 + (f"segment ends at checkpoint {ids[end]} (event {expected})"
                                    if end is not None else f"trace has {expected} events"))
        return ReplayResult(status, state.event_index - checkpoints[start]["event"],
                            stream.event_count, trace.complete,
                            first_event=checkpoints[start]["event"], end_event=state.event_index,
                            checkpoints_compared=compared, process=process,
                            pid=stream.row["pid"], **kw)

    pid = start_from(start)
    feed.seek(checkpoints[start]["event"])
    next_k = start + 1
    stop_at(next_k)
    alive, res = True, None
    try:
        while res is None:
            stop = lib.rrv_replay_run(state)
            rp.reraise()
            if stop == lib.RRV_STOP_NEED_EVENTS:
                feed.refill()
            elif stop == lib.RRV_STOP_SEGMENT_END:
                t = time.monotonic()
                ckpt = trace.checkpoint(ids[next_k])
                diffs = compare(pid, ckpt, trace, pages, notes, whole=end is None)
                timing["compare_seconds"] += time.monotonic() - t
                compared += 1
                if diffs:
                    res = result("diverged", divergence=R.describe_checkpoint(
                        state.event_index, ids[next_k], diffs, trace, ckpt["tid"],
                        segment=ids[next_k - 1]))
                elif end is not None and next_k == end:
                    res = result("verified")
                else:
                    next_k += 1
                    stop_at(next_k)
            elif stop == lib.RRV_STOP_SEGV_RESTORE:
                mem = TraceeMemory(pid)
                try:
                    with VerifierSite(pid, mem) as injector:
                        put_back_segv(pid, injector, mem, state.segv_restore)
                finally:
                    mem.close()
            elif stop == lib.RRV_STOP_FILE_FD:
                index = state.file_index
                rp.file_fds[index] = make_file_memfd(pid, pages.recorded_file(index))
            elif stop == lib.RRV_STOP_EXEC_RESTORE:
                ev = feed.current()
                if ev.kind != E.EXEC:
                    raise TraceError(f"{trace.path}: event {ev.index} should be an exec event")
                feed.skip_current()
                if next_k >= len(checkpoints) or checkpoints[next_k]["event"] != state.event_index:
                    if not trace.complete and feed.exhausted():
                        res = result("verified")   # the recording stopped before it could take it
                        continue
                    raise TraceError(f"{trace.path}: no checkpoint right after the exec at "
                                     f"event {ev.index}")
                if end is not None and next_k == end:
                    res = result("verified")     # the segment ends where a new image begins
                else:
                    lib.rrv_kill(pid)
                    pid = start_from(next_k)
                    next_k += 1
                    stop_at(next_k)
            elif stop == lib.RRV_STOP_EXITED:
                alive = False
                if not feed.exhausted():
                    raise TraceError(f"{trace.path}: events follow the tracee's exit")
                exit_event = state.exit_syscall_event - 1
                if exit_event >= 0 and not any(c["event"] == exit_event for c in checkpoints):
                    raise TraceError(f"{trace.path}: the exit at event {exit_event} has no "
                                     f"checkpoint: the process's final state cannot be compared")
                res = result("verified", exit_status=state.status)
            elif stop == lib.RRV_STOP_END_OF_TRACE:
                if trace.complete:
                    raise TraceError(f"{trace.path}: the trace ends before the tracee exits")
                if state.pos < len(feed.buf) and feed.current().kind == E.EXIT:
                    feed.skip_current()          # the SIGKILL exit: nothing to check
                if not feed.exhausted():
                    raise TraceError(f"{trace.path}: events follow the tracee's exit at event "
                                     f"{state.event_index - 1}")
                res = result("verified")
            elif stop == lib.RRV_STOP_DIVERGED:
                if state.div.kind == lib.RRV_DIV_TRACE:    # malformed, not a divergence
                    raise TraceError(f"{trace.path}: event {state.event_index}: "
                                     + ffi.string(state.div.detail).decode(errors="replace"))
                res = result("diverged", divergence=R.describe(state, feed, rp, pid, trace))
                res.events += 1
            else:
                raise NativeError("replay: " + ffi.string(state.message).decode(errors="replace"))
    finally:
        if alive:
            lib.rrv_kill(pid)
    reached = [trace.checkpoint(ids[k]) for k in range(start, min(next_k + 1, len(ids)))
               if checkpoints[k]["event"] <= state.event_index]
    invariant = check_replayed(trace, process, reached, state.event_index, pages)
    if invariant.violations and res.status == "verified":
        res.status = "diverged"
        res.divergence = dict(invariant.violations[0],
                              reproduce=f"rrverify replay {trace.path} --segment {ids[start]}")
    res.invariant_violations = invariant.violations
    res.seconds = time.monotonic() - t0
    res.stats = {"syscalls_emulated": state.syscalls_emulated,
                 "syscalls_executed": state.syscalls_executed,
                 "signals": state.signals, "rdtsc": state.rdtscs,
                 "inexact_deaths": state.inexact_deaths,
                 "buffered_syscalls": state.buffered_syscalls,
                 "syscallbuf_flushes": state.flushes,
                 "syscall_breakpoint_checks": state.breakpoint_checks,
                 "syscallbuf_invariant_checks": invariant.checks,
                 "syscallbuf_invariant_violations": len(invariant.violations), **notes,
                 **{k: round(v, 6) for k, v in timing.items()}}
    return res


def replay_processes(trace: Trace, *, echo: bool = False, cpu: int | None = None
                     ) -> tuple[ReplayResult, int]:
    """Replay every process of the trace from its first checkpoint to its end, one after the
    other, up to the first divergence. Returns the combined result and the number of
    processes replayed. (A process that never reached its first checkpoint, killed before it
    ever ran, has nothing to replay.)"""
    if trace.complete and trace.unreplayable():
        p = trace.unreplayable()[0]
        raise TraceError(f"{trace.path}: process {p['pid']} has events but no checkpoint to "
                         f"replay them from")
    firsts = {}
    for c in trace.segments:
        firsts.setdefault(c["process"], c["id"])
    if not firsts:
        raise TraceError(f"{trace.path}: the trace has no checkpoint to start replay from "
                         f"(the recording ended before its first)")
    pages = PageStoreReader(trace)
    total = None
    for n, (process, first) in enumerate(sorted(firsts.items())):
        res = replay(trace, start=first, echo=echo, cpu=cpu, pages=pages)
        if total is None:
            total = res
        else:
            total.events += res.events
            total.trace_events += res.trace_events
            total.checkpoints_compared += res.checkpoints_compared
            total.seconds += res.seconds
            for k, v in res.stats.items():
                if isinstance(v, (int, float)):
                    total.stats[k] = total.stats.get(k, 0) + v
            total.status, total.divergence = res.status, res.divergence
            total.invariant_violations += res.invariant_violations
            total.process, total.pid = res.process, res.pid
        if res.status != "verified":
            return total, n + 1
    total.exit_status = None
    return total, len(firsts)
