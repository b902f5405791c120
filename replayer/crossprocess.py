"""Cross-process checks (docs/checks.md §13.2): what one process saw of another must be what the
other did. Each verified segment reports the facts its events hold about other processes
(segment_facts: the pids its forks returned, the statuses its waits got, the process's exit,
the bytes it moved through pipes); check() joins the facts of every segment of a trace.

rr has none of these checks: it replays a process tree as one, so a trace whose streams
disagree with each other is never noticed there."""
from __future__ import annotations

import os
import struct

from .. import events as E
from ..recorder.syscalls import NUMBERS
from ..trace import Trace

FORKS = {NUMBERS[n] for n in ("fork", "vfork", "clone", "clone3")}
WAIT4, WAITID = NUMBERS["wait4"], NUMBERS["waitid"]
CLD_EXITED, CLD_KILLED, CLD_DUMPED = 1, 2, 3
PIPE_IO = struct.Struct("<QQII")        # struct rrv_pipe_io
PIPE_DIRECTIONS = {0: "read", 1: "write", 2: "untracked"}
POLY_P, POLY_B = (1 << 61) - 1, 1000003  # tracee.c: rrv_poly_hash


def poly_concat(pieces: list[tuple[int, int]]) -> int:
    """The hash of the concatenation of pieces given as (hash, length)."""
    h = 0
    for piece, length in pieces:
        h = (h * pow(POLY_B, length, POLY_P) + piece) % POLY_P
    return h


def _written(ev: E.Event, addr: int, size: int) -> bytes | None:
    """The bytes the event wrote at addr (inline writes only: a status or a siginfo)."""
    for w in ev.writes:
        if w.addr == addr and w.data is not None and len(w.data) >= size:
            return w.data[:size]
    return None


def exit_of(status: int) -> tuple[str, int]:
    """A wait status as ("exited", code) or ("killed", signal)."""
    if os.WIFEXITED(status):
        return "exited", os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return "killed", os.WTERMSIG(status)
    return "other", status


def _a_fact(kind: int, flags: int, nr: int) -> bool:
    """Can an event with this header hold a fact (segment_facts decodes only those)?"""
    return kind in (E.EXIT, E.FLUSH) or kind == E.SYSCALL and (
        flags & E.EF_PIPE or nr in FORKS or nr in (WAIT4, WAITID))


def segment_facts(trace: Trace, process: int, first: int, end: int) -> dict:
    """What events [first, end) of process's stream say about other processes."""
    forks, waits, exits, pipes = [], [], [], []
    stream = trace.stream(process)
    for frame in stream.frames:
        if frame.first_event + frame.events <= first or frame.first_event >= end:
            continue
        for ev in E.iter_events_where(stream.read_frame(frame), frame.first_event, _a_fact):
            if not first <= ev.index < end:
                continue
            if ev.kind == E.FLUSH:      # buffered reads and writes of pipes, in order
                for rec in E.buffered_syscalls(ev):
                    if rec.pipe and rec.result > 0:
                        pipe, h, direction = rec.pipe
                        pipes.append({"event": ev.index, "pipe": pipe, "hash": h,
                                      "length": rec.result,
                                      "direction": PIPE_DIRECTIONS.get(direction, "untracked")})
                continue
            if ev.kind == E.SYSCALL and ev.flags & E.EF_PIPE and ev.result > 0:
                for pipe, h, direction, _ in PIPE_IO.iter_unpack(
                        ev.extra[:len(ev.extra) - len(ev.extra) % PIPE_IO.size]):
                    pipes.append({"event": ev.index, "pipe": pipe, "hash": h, "length": ev.result,
                                  "direction": PIPE_DIRECTIONS.get(direction, "untracked")})
            if ev.kind == E.EXIT:
                exits.append({"event": ev.index, "status": ev.nr})
            elif ev.kind != E.SYSCALL or ev.result <= 0 and ev.nr != WAITID:
                continue
            elif ev.nr in FORKS:
                forks.append({"event": ev.index, "pid": ev.result})
            elif ev.nr == WAIT4:
                raw = _written(ev, ev.regs["rsi"], 4) if ev.regs["rsi"] else None
                if raw is not None:
                    status = struct.unpack("<i", raw)[0]
                    if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                        waits.append({"event": ev.index, "pid": ev.result,
                                      "exit": list(exit_of(status))})
            elif ev.nr == WAITID and ev.result == 0 and ev.regs["rdx"]:
                raw = _written(ev, ev.regs["rdx"], 28)
                if raw is not None:
                    _signo, _errno, code, _pad, pid, _uid, value = struct.unpack("<7i", raw)
                    if pid and code in (CLD_EXITED, CLD_KILLED, CLD_DUMPED):
                        waits.append({"event": ev.index, "pid": pid,
                                      "exit": ["exited" if code == CLD_EXITED else "killed",
                                               value]})
    return {"process": process, "forks": forks, "waits": waits, "exits": exits, "pipes": pipes}


def _divergence(check: str, detail: str, *who: tuple[dict, int | None]) -> dict:
    return {"kind": "cross-process", "check": check, "detail": detail,
            "processes": [{"process": row["index"], "pid": row["pid"], "event": event}
                          for row, event in who]}


def check(trace: Trace, facts: list[dict], whole: set[int] | None = None
          ) -> tuple[int, list[dict]]:
    """Join every segment's facts: (checks run, divergences). A fact whose other side the
    trace does not hold (a child still running when an incomplete recording ended) is not
    checked. whole: the processes whose every segment reported its facts (None: all); a pipe
    is compared only between two of those (a missing piece would misalign the bytes)."""
    procs = trace.processes
    forks: dict[tuple[int, int], int] = {}       # (process, event) -> pid returned
    exits: dict[int, int] = {}                   # process -> wait status
    waits: dict[int, list[dict]] = {}            # process -> its waits, in event order
    for f in facts:
        p = f["process"]
        for x in f["forks"]:
            forks[(p, x["event"])] = x["pid"]
        for x in f["exits"]:
            exits[p] = x["status"]
        waits.setdefault(p, []).extend(f["waits"])
    checks, found = 0, []

    # The pid a fork returned names the child recorded as born there.
    for child in procs[1:]:
        parent = procs[child["parent"]]
        got = forks.get((parent["index"], child["parent_event"]))
        if got is None:
            # No fork there, in a parent whose every event a replay went through: the trace
            # says the child was born where nothing could have made it.
            if trace.complete and (whole is None or parent["index"] in whole):
                checks += 1
                found.append(_divergence(
                    "fork-pid", f"process {child['pid']} was recorded as born at event "
                    f"{child['parent_event']} of process {parent['pid']}, where no fork "
                    f"returned a child", (parent, child["parent_event"]), (child, None)))
            continue
        checks += 1
        if got != child["pid"]:
            found.append(_divergence(
                "fork-pid", f"the fork at event {child['parent_event']} of process "
                f"{parent['pid']} returned {got}, but the child recorded there is {child['pid']}",
                (parent, child["parent_event"]), (child, None)))

    # The status a wait got is the exit the child recorded: the k-th wait of a parent that
    # returned pid X is for its k-th child with pid X (pids may be reused).
    children: dict[tuple[int, int], list[dict]] = {}
    for child in procs[1:]:
        children.setdefault((child["parent"], child["pid"]), []).append(child)
    for p, ws in waits.items():
        seen: dict[int, int] = {}
        for w in sorted(ws, key=lambda w: w["event"]):
            n = seen.get(w["pid"], 0)
            seen[w["pid"]] = n + 1
            candidates = children.get((p, w["pid"]), [])
            if n >= len(candidates):
                continue     # not a child of the recorded tree's own (or not recorded)
            child = candidates[n]
            status = exits.get(child["index"])
            if status is None:
                continue
            checks += 1
            want = list(exit_of(status))
            if w["exit"] != want:
                found.append(_divergence(
                    "wait-status", f"process {procs[p]['pid']} waited for {child['pid']} and got "
                    f"{w['exit'][0]} {w['exit'][1]}, but that child's recorded end is {want[0]} "
                    f"{want[1]}", (procs[p], w["event"]), (child, None)))
    # Bytes read from a pipe are, in order, the bytes written to it: for a pipe with one
    # writing and one reading process of the tree, compared up to the last point where both
    # sides' pieces end (a reader that stopped early is compared as far as it read).
    sides: dict[int, dict[str, dict[int, list[dict]]]] = {}
    for f in facts:
        for io in f.get("pipes", []):
            sides.setdefault(io["pipe"], {}).setdefault(io["direction"], {}) \
                .setdefault(f["process"], []).append(io)
    for pipe, by_dir in sorted(sides.items()):
        writers, readers = by_dir.get("write", {}), by_dir.get("read", {})
        if "untracked" in by_dir or len(writers) != 1 or len(readers) != 1 or \
                set(writers) == set(readers) or \
                whole is not None and not (set(writers) | set(readers)) <= whole:
            continue
        (w, wio), = writers.items()
        (r, rio), = readers.items()
        wio.sort(key=lambda io: io["event"])
        rio.sort(key=lambda io: io["event"])

        def ends(ios):
            total, out = 0, {0: 0}
            for n, io in enumerate(ios, 1):
                total += io["length"]
                out[total] = n
            return out
        wends, rends = ends(wio), ends(rio)
        common = max(set(wends) & set(rends))
        if common == 0:
            continue
        checks += 1
        wh = poly_concat([(io["hash"], io["length"]) for io in wio[:wends[common]]])
        rh = poly_concat([(io["hash"], io["length"]) for io in rio[:rends[common]]])
        if wh != rh:
            found.append(_divergence(
                "pipe-data", f"the {common} bytes process {procs[r]['pid']} read from pipe "
                f"{pipe} are not the bytes process {procs[w]['pid']} wrote to it",
                (procs[w], wio[0]["event"]), (procs[r], rio[0]["event"])))
    return checks, found
