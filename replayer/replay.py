"""The replay driver: starts the recorded program afresh, feeds the native replay loop the
trace's event frames, and turns what it finds into a result."""
from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

from .. import events as E
from .. import exec_image
from .._native import ffi, lib
from ..errors import NativeError, TraceError
from ..trace import Trace
from ..tracee import CallbackTarget, choose_cpu, spawn
from . import report as R


@dataclass
class ReplayResult:
    status: str                 # "verified" | "diverged"
    events: int                 # events checked (the divergent one included)
    trace_events: int
    complete_trace: bool
    exit_status: int | None = None
    divergence: dict | None = None
    stats: dict = field(default_factory=dict)
    seconds: float = 0.0


class Replayer(CallbackTarget):
    def __init__(self, trace: Trace):
        super().__init__()
        self.trace = trace
        self._blobs: dict[bytes, bytes] = {}
        self._files: dict[int, bytes] = {}
        self.mappings: list[tuple[int, int, int, int]] = []   # start, end, file index, offset

    def blob_get(self, digest: bytes) -> bytes:
        if digest not in self._blobs:
            self._blobs[digest] = self.trace.blob(digest)
        return self._blobs[digest]

    def file_content(self, index: int, addr: int, length: int, offset: int) -> bytes:
        self.mappings.append((addr, addr + length, index, offset))
        return self._file(index)

    def _file(self, index: int) -> bytes:
        if index not in self._files:
            files = self.trace.files
            if index >= len(files):
                raise TraceError(f"{self.trace.path}: mapped file #{index} is not in files.jsonl")
            self._files[index] = exec_image.load_recorded_file(files[index], self.trace)
        return self._files[index]

    def check_exec_files(self, ev: E.Event, pid: int) -> None:
        """The program and interpreter the kernel just mapped must be the recorded ones."""
        n = len(ev.extra) // 4
        recorded = [self.trace.files[i] if i < len(self.trace.files) else None
                    for i in struct.unpack(f"<{n}I", ev.extra[:n * 4])]
        for i, ident in zip(struct.unpack(f"<{n}I", ev.extra[:n * 4]), recorded):
            if ident is None:
                raise TraceError(f"{self.trace.path}: exec event names unknown file #{i}")
            self._file(i)   # reads and checks the content hash
        for r in exec_image.read_maps(pid):
            if r["inode"] and r["path"].startswith("/"):
                index = next((i for i, f in enumerate(self.trace.files) if f["path"] == r["path"]), None)
                if index is not None:
                    self.mappings.append((r["start"], r["end"], index, r["offset"]))


class EventFeed:
    """Hands the native loop a contiguous buffer: the unconsumed tail plus the next frame."""

    def __init__(self, trace: Trace, state):
        self.frames = iter(trace.frames)
        self.trace = trace
        self.state = state
        self.buf = b""
        self.cdata = None

    def refill(self) -> None:
        s = self.state
        tail = self.buf[s.pos:]
        frame = next(self.frames, None)
        if frame is None:
            s.eof = 1
            self.buf = tail
        else:
            self.buf = tail + self.trace.read_frame(frame)
        self.cdata = ffi.from_buffer(self.buf)
        s.events = self.cdata
        s.len = len(self.buf)
        s.pos = 0

    def current(self) -> E.Event:
        return E.decode_at(self.buf, self.state.pos, self.state.event_index)


def replay(trace: Trace, *, echo: bool = False) -> ReplayResult:
    m = trace.manifest
    rp = Replayer(trace)
    state = ffi.new("struct rrv_replayer *")
    state.handle = rp.handle
    state.echo = int(echo)
    rlimits = [l for l in m.get("rlimits", []) if l[0] != "RLIMIT_CORE"] + [["RLIMIT_CORE", 0, 0]]
    t0 = time.monotonic()
    pid = spawn(m["exe"], m["command"], m["env"], cwd=None, cpu=choose_cpu(),
                devnull_stdio=True, rlimits=rlimits)
    lib.rrv_replay_init(state, pid)
    feed = EventFeed(trace, state)
    alive = True
    result = None
    try:
        while result is None:
            stop = lib.rrv_replay_run(state)
            rp.reraise()
            if stop == lib.RRV_STOP_NEED_EVENTS:
                feed.refill()
            elif stop == lib.RRV_STOP_EXEC:
                ev = feed.current()
                if ev.kind != E.EXEC:
                    raise TraceError(f"{trace.path}: event {ev.index} should be an exec event")
                rp.check_exec_files(ev, pid)
                exec_image.patch_vdso(pid)
            elif stop == lib.RRV_STOP_EXITED:
                alive = False
                if state.pos != len(feed.buf) or next(feed.frames, None) is not None:
                    raise TraceError(f"{trace.path}: events follow the tracee's exit")
                result = ReplayResult("verified", state.event_index, trace.event_count,
                                      trace.complete, exit_status=state.status)
            elif stop == lib.RRV_STOP_END_OF_TRACE:
                if state.pos < len(feed.buf):
                    state.event_index += 1      # the SIGKILL exit event: nothing to check
                if trace.complete:
                    raise TraceError(f"{trace.path}: the trace ends before the tracee exits")
                result = ReplayResult("verified", state.event_index, trace.event_count, False)
            elif stop == lib.RRV_STOP_DIVERGED:
                result = ReplayResult("diverged", state.event_index + 1, trace.event_count,
                                      trace.complete,
                                      divergence=R.describe(state, feed, rp, pid, trace))
            else:
                raise NativeError("replay: " + ffi.string(state.message).decode(errors="replace"))
    finally:
        if alive:
            lib.rrv_kill(pid)
    result.seconds = time.monotonic() - t0
    result.stats = {"syscalls_emulated": state.syscalls_emulated,
                    "syscalls_executed": state.syscalls_executed,
                    "signals": state.signals, "rdtsc": state.rdtscs}
    return result
