"""Divergence reports: what was expected, what was found, where (symbolized with pyelftools,
disassembled with capstone), and how to reproduce it."""
from __future__ import annotations

import signal as _signal

import capstone

from .. import events as E
from .._native import ffi, lib
from ..errors import TraceError
from ..recorder import syscalls
from ..symbolize import Symbolizer
from ..tracee import regs_dict

DIV_NAMES = {lib.RRV_DIV_EVENT_KIND: "event-kind", lib.RRV_DIV_SYSCALL: "syscall",
             lib.RRV_DIV_REGS: "registers", lib.RRV_DIV_FPU: "fpu-state",
             lib.RRV_DIV_RESULT: "syscall-result", lib.RRV_DIV_DATA: "data",
             lib.RRV_DIV_SIGINFO: "siginfo", lib.RRV_DIV_SIGNAL: "signal",
             lib.RRV_DIV_EXIT_STATUS: "exit-status", lib.RRV_DIV_EXITED_EARLY: "exited-early",
             lib.RRV_DIV_TRACE: "trace", lib.RRV_DIV_SYSCALLBUF: "syscallbuf"}


def event_label(kind: int, nr: int) -> str:
    if kind == E.SYSCALL:
        return f"syscall {syscalls.name_of(nr)}"
    if kind == E.SIGNAL:
        try:
            return f"signal {_signal.Signals(nr).name}"
        except ValueError:
            return f"signal {nr}"
    return E.KIND_NAMES.get(kind, f"kind {kind}")


def disassemble(pid: int, addr: int, count: int = 4) -> list[str]:
    try:
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
            mem.seek(addr)
            code = mem.read(64)
    except OSError:
        return []
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    return [f"{i.address:#x}: {i.mnemonic} {i.op_str}".rstrip()
            for i in list(md.disasm(code, addr))[:count]]


def describe(state, feed, replayer, pid: int, trace) -> dict:
    d = state.div
    kind = DIV_NAMES.get(d.kind, str(d.kind))
    detail = ffi.string(d.detail).decode(errors="replace")
    if d.kind == lib.RRV_DIV_SYSCALLBUF:   # each syscall-breakpoint check has its own name
        kind, _, detail = detail.partition(": ")
    out = {"event": d.event_index, "check": kind, "detail": detail}
    try:
        ev = feed.current()
        out["expected"] = {"event": event_label(ev.kind, ev.nr), "tid": ev.tid}
        out["task"] = ev.tid
    except TraceError:
        ev = None
    if d.kind == lib.RRV_DIV_EVENT_KIND:
        out["found"] = {"event": event_label(d.found_kind, d.found_nr)}
    elif d.kind in (lib.RRV_DIV_SYSCALL, lib.RRV_DIV_SIGNAL):
        k = E.SYSCALL if d.kind == lib.RRV_DIV_SYSCALL else E.SIGNAL
        out["expected"]["event"] = event_label(k, d.expected_nr)
        out["found"] = {"event": event_label(k, d.found_nr)}
    elif d.kind == lib.RRV_DIV_FPU:
        out["found"] = {"fpu_digest": f"{d.found_fpu:#018x}"}
        out["expected"]["fpu_digest"] = f"{d.expected_fpu:#018x}"
    elif d.kind in (lib.RRV_DIV_RESULT, lib.RRV_DIV_DATA, lib.RRV_DIV_SIGINFO,
                    lib.RRV_DIV_EXIT_STATUS):
        mask = 2**64 - 1   # show as the unsigned words they are
        out["expected"]["value"] = d.expected_value & mask
        out["found"] = {"value": d.found_value & mask}
    if d.kind in (lib.RRV_DIV_REGS, lib.RRV_DIV_SYSCALL, lib.RRV_DIV_FPU, lib.RRV_DIV_DATA,
                  lib.RRV_DIV_SIGINFO, lib.RRV_DIV_SIGNAL):
        out["registers"] = E.register_diff(regs_dict(d.expected_regs), regs_dict(d.found_regs))
    ip = d.found_regs.rip or d.expected_regs.rip
    if ip:
        files = trace.files
        sym = Symbolizer(replayer.mappings, replayer.file,
                         lambda i: files[i]["path"] if i < len(files) else f"file #{i}")
        # A syscall stop reports the ip after the `syscall` instruction: show that instruction.
        at = ip - 2 if d.kind != lib.RRV_DIV_EVENT_KIND and ev is not None and ev.kind == E.SYSCALL else ip
        out["ip"] = {"address": at, "symbol": sym(at), "disassembly": disassemble(pid, at)}
        if d.site:      # a buffered syscall: the program's own site, which its stub stands for
            out["site"] = {"address": d.site, "symbol": sym(d.site)}
    out["reproduce"] = f"rrverify replay {trace.path}"
    return out


def with_segment(div: dict, segment: int, trace_path: str) -> dict:
    return dict(div, segment=segment, reproduce=f"rrverify replay {trace_path} --segment {segment}")


def describe_checkpoint(event: int, k: int, diffs: list[dict], trace, tid: int,
                        segment: int) -> dict:
    """A replay of segment `segment` that reached checkpoint k's event (its process's next
    checkpoint) with a state other than the checkpoint's."""
    return {"event": event, "check": "checkpoint", "checkpoint": k, "task": tid,
            "detail": f"state differs from checkpoint {k}: " +
                      ", ".join(d["what"] for d in diffs),
            "differences": diffs, "reproduce": f"rrverify replay {trace.path} --segment {segment}"}


def format_text(div: dict) -> list[str]:
    lines = [f"divergence at event {div['event']} (task {div.get('task', '?')}): "
             f"{div['check']}: {div['detail']}"]
    exp, found = div.get("expected", {}), div.get("found", {})
    if exp or found:
        lines.append(f"  expected: {_kv(exp)}")
        if found:
            lines.append(f"  found:    {_kv(found)}")
    for r in div.get("registers", []):
        lines.append(f"  {r['register']:>8}: expected {r['expected']:#x}, found {r['found']:#x}")
    for d in div.get("differences", []):
        if d["what"] == "memory":
            for r in d["regions"]:
                lines.append(f"  memory {r['region']} {r['perms']} {r['path']}: "
                             f"{r['pages_differing']} pages differ, first at {r['first_difference']}")
        elif d["what"] == "registers":
            lines.extend(f"  {r['register']:>8}: expected {r['expected']:#x}, found {r['found']:#x}"
                         for r in d["registers"])
        elif d["what"] == "address-space":
            lines.append(f"  address space: expected {len(d['expected'])} ranges, found "
                         f"{len(d['found'])}; first difference: " + next(
                             (f"{a} vs {b}" for a, b in zip(d["expected"], d["found"]) if a != b),
                             "in the ranges' count"))
        else:
            lines.append(f"  {d['what']}: expected {d.get('expected')}, found {d.get('found')}")
    ip = div.get("ip")
    if ip:
        lines.append(f"  at ip {ip['address']:#x}" + (f": {ip['symbol']}" if ip.get("symbol") else ""))
        lines.extend(f"    {insn}" for insn in ip.get("disassembly", []))
    site = div.get("site")
    if site:
        lines.append(f"  buffered, from the program's syscall at {site['address']:#x}: "
                     f"{site['symbol']}")
    lines.append(f"  reproduce: {div['reproduce']}")
    return lines


def _kv(d: dict) -> str:
    return ", ".join(f"{k}={v:#x}" if isinstance(v, int) and k == "value" else f"{k}={v}"
                     for k, v in d.items())
