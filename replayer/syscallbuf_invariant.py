"""The syscallbuf invariant (rr issue #3285; docs/checks.md, "Syscall buffering"): no recorded
process is ever handed a signal, or checkpointed, while its ip is inside the preload's code or
at the untraced syscall instruction. The recorder keeps it by construction (a signal that finds
a thread there is held, and the buffered syscall unwound to its stub first); the verifier checks
every point of a segment where it could be broken: the registers of both checkpoints that bound
it, and of every signal delivery recorded in it.

Where the preload's code is, in a process, comes from the trace alone: the checkpoint's regions
that map the preload library (the file whose digest the manifest names), and the executable
segments of that file's ELF (pyelftools; preload.code_ranges)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import events as E
from .._native import lib
from ..preload import code_ranges
from ..trace import Trace

# The syscall page's untraced instruction, and its address after it (a stop in the syscall)
UNTRACED = (lib.RRV_UNTRACED_SYSCALL, lib.RRV_UNTRACED_SYSCALL + 3)


@dataclass
class InvariantResult:
    checks: int = 0
    violations: list = field(default_factory=list)


def preload_ranges(trace: Trace, ckpt: dict, pages) -> list[tuple[int, int]]:
    """[lo, hi) ranges of the preload's code in the process of this checkpoint (empty if it
    does not map the preload), and the untraced instruction's."""
    recorder = trace.manifest.get("recorder")
    digest = recorder.get("preload") if isinstance(recorder, dict) else None
    if not isinstance(digest, str):
        return []
    files = trace.files
    ranges = [UNTRACED]
    for region in ckpt["regions"]:
        index = region.get("file")
        if index is None or not 0 <= index < len(files) or files[index].get("sha256") != digest:
            continue
        if region["offset"] != 0:
            continue
        image = pages.recorded_file(index).data
        base = region["start"]          # its first mapping: the ELF's address 0
        ranges += [(base + lo, base + hi) for lo, hi in code_ranges(bytes(image))]
    return ranges


def _inside(ip: int, ranges) -> tuple[int, int] | None:
    return next(((lo, hi) for lo, hi in ranges if lo <= ip < hi), None)


def check_replayed(trace: Trace, process: int, ckpts: list[dict], end: int,
                   pages) -> InvariantResult:
    """The invariant at each of these checkpoints of the process (in event order, the first
    where replay began) and at every SIGNAL event from the first up to event `end` (each
    against the preload's code as the checkpoint before it maps it: an exec moves it). A fatal
    signal that ends the process in user code (ASYNC_FATAL) runs no handler: not a point."""
    res = InvariantResult()
    stream = trace.stream(process)
    for i, ckpt in enumerate(ckpts):
        ranges = preload_ranges(trace, ckpt, pages)
        until = ckpts[i + 1]["event"] if i + 1 < len(ckpts) else end
        if not ranges:
            continue

        def check(ip: int, what: str, event: int) -> None:
            res.checks += 1
            hit = _inside(ip, ranges)
            if hit:
                res.violations.append({
                    "check": "syscallbuf-invariant", "event": event, "task": ckpt["tid"],
                    "ip": {"address": ip},
                    "detail": f"{what} with its ip {ip:#x} inside the preload's buffering code "
                              f"({hit[0]:#x}-{hit[1]:#x}): a signal handler there would find "
                              f"the syscall buffer half-written (rr issue #3285)"})

        check(ckpt["regs"]["rip"], f"checkpoint {ckpt['id']} was taken", ckpt["event"])
        for frame in stream.frames:
            if frame.first_event + frame.events <= ckpt["event"] or frame.first_event >= until:
                continue
            for ev in E.iter_events_where(stream.read_frame(frame), frame.first_event,
                                          lambda kind, flags, nr: kind == E.SIGNAL and
                                          not flags & E.EF_ASYNC_FATAL):
                if ckpt["event"] <= ev.index < until:
                    check(ev.regs["rip"], f"signal {ev.nr} was delivered", ev.index)
    return res
