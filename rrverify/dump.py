"""`rrverify dump`: one line per event. Syscall arguments are formatted by python-ptrace's
syscall prototypes; pointers show the bytes the recording captured there when it has them."""
from __future__ import annotations

import ctypes
import errno
import os
import signal
from types import SimpleNamespace

from ptrace.func_call import FunctionCallOptions
from ptrace.syscall.ptrace_syscall import PtraceSyscall

from . import events as E
from .recorder import syscalls

OPTIONS = FunctionCallOptions(write_argname=True, string_max_length=64, max_array_count=8)


class _NotRecorded(Exception):
    pass


class RecordedMemory:
    """The minimal python-ptrace 'process' interface, answered from an event's recorded
    memory writes (the tracee is long gone)."""

    def __init__(self, ev: E.Event):
        self.writes = [(w.addr, w.data) for w in ev.writes if w.data is not None]

    def readBytes(self, address, size):
        for addr, data in self.writes:
            if addr <= address and address + size <= addr + len(data):
                return data[address - addr:address - addr + size]
        raise _NotRecorded()

    def readWord(self, address):
        return int.from_bytes(self.readBytes(address, 8), "little")

    def readStruct(self, address, struct):
        return struct.from_buffer_copy(self.readBytes(address, ctypes.sizeof(struct)))

    def readArray(self, address, basetype, count):
        return (basetype * count).from_buffer_copy(
            self.readBytes(address, ctypes.sizeof(basetype) * count))

    def readCString(self, address, max_size):
        for addr, data in self.writes:
            if addr <= address < addr + len(data):
                chunk = data[address - addr:address - addr + max_size]
                end = chunk.find(b"\0")
                return (chunk if end < 0 else chunk[:end]), end < 0
        raise _NotRecorded()


def format_result(result: int) -> str:
    if -4096 < result < 0 and -result in errno.errorcode:
        return f"-1 {errno.errorcode[-result]} ({os.strerror(-result)})"
    return str(result) if -4096 < result < 4096 else hex(result & (2**64 - 1))


def format_syscall(ev: E.Event) -> str:
    regs = SimpleNamespace(**ev.regs)
    call = PtraceSyscall(RecordedMemory(ev), OPTIONS, regs)
    call.name = syscalls.name_of(ev.nr)
    call.readArguments(call.readArgumentValues(regs))
    for arg in call.arguments:
        try:
            text = arg.createText()
            arg.text = str(text) if text is not None else hex(arg.value)
        except Exception:  # noqa: BLE001 -- memory not in the trace: show the pointer
            arg.text = hex(arg.value)
    return call.format()


def format_event(ev: E.Event) -> str:
    head = f"{ev.index:>8} [{ev.tid}] "
    if ev.kind == E.SYSCALL:
        line = f"{format_syscall(ev)} = {format_result(ev.result)}"
        if ev.flags & E.EF_REFUSED:
            line += " (refused by the recorder)"
        if ev.flags & E.EF_VFORK:
            line += " (vfork: the writes are what the child changed)"
        if ev.writes:
            line += f"  <{sum(w.length for w in ev.writes)} bytes written>"
        return head + line
    if ev.kind == E.RDTSC:
        insn = "rdtscp" if ev.flags & E.EF_RDTSCP else "rdtsc"
        return head + f"{insn} at {ev.regs['rip']:#x} = {ev.result:#x}"
    if ev.kind == E.SIGNAL:
        try:
            name = signal.Signals(ev.nr).name
        except ValueError:
            name = str(ev.nr)
        how = ("at syscall exit" if ev.flags & E.EF_AT_SYSCALL_EXIT else
               "held, delivered at syscall entry" if ev.flags & E.EF_AT_SYSCALL_ENTRY else
               "fatal, delivered at once in user code" if ev.flags & E.EF_ASYNC_FATAL else
               "fault")
        return head + f"signal {name} ({how}) at {ev.regs['rip']:#x}"
    if ev.kind == E.FLUSH:
        lines = [head + f"flush: {ev.nr} buffered syscalls ({ev.result} bytes of buffer at "
                        f"{ev.aux:#x})"]
        pad = " " * len(head)
        for rec in E.buffered_syscalls(ev):
            line = f"{format_syscall(rec.as_event(ev))} = {format_result(rec.result)}"
            if rec.writes:
                line += f"  <{sum(w.length for w in rec.writes)} bytes written>"
            lines.append(f"{pad}  buffered: {line}  (stub {rec.site:#x})")
        return "\n".join(lines)
    if ev.kind == E.UNWIND:
        return head + (f"unwind: buffered {syscalls.name_of(ev.nr)} moved out of the preload, "
                       f"to its stub's syscall at {ev.regs['rip'] - 2:#x}")
    if ev.kind == E.PATCH:
        if not ev.writes:
            return head + f"patch: syscall site {ev.aux:#x}"
        others = [f"{jump.addr:#x}" for jump in ev.writes[3::2]]
        return head + (f"patch: syscall site {ev.aux:#x} ({syscalls.name_of(ev.nr)}) now jumps "
                       f"to its stub at {ev.writes[0].addr:#x}" +
                       (f"; with it {len(others)} more: {', '.join(others)}" if others else ""))
    if ev.kind == E.EXEC:
        return head + f"exec: entry {ev.regs['rip']:#x}, stack {ev.regs['rsp']:#x}"
    if ev.kind == E.EXIT:
        st = ev.nr
        if os.WIFEXITED(st):
            return head + f"exit: status {os.WEXITSTATUS(st)}"
        return head + f"exit: killed by signal {os.WTERMSIG(st)}"
    return head + ev.kind_name
