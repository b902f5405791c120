"""The binary event records of a trace: decoding (dump, replay, reports) and the encoding of
events that Python writes itself (EXEC). The layout is struct rrv_event in
rrverify/native/rrv.h and is documented in docs/trace-format.md."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .errors import TraceError

SYSCALL, RDTSC, SIGNAL, EXEC, EXIT, FLUSH, PATCH, UNWIND = 1, 2, 3, 4, 5, 6, 7, 8
KIND_NAMES = {SYSCALL: "syscall", RDTSC: "rdtsc", SIGNAL: "signal", EXEC: "exec", EXIT: "exit",
              FLUSH: "flush", PATCH: "patch", UNWIND: "unwind"}
EF_AT_SYSCALL_EXIT, EF_RDTSCP, EF_REFUSED, EF_SEGV_RESTORE = 1, 2, 4, 8
EF_AT_SYSCALL_ENTRY, EF_ASYNC_FATAL, EF_VFORK, EF_PIPE = 16, 32, 64, 128
BF_SENT, BF_PIPE = 1, 2
PIPE_IO = struct.Struct("<QQII")
WRITE_INLINE, WRITE_BLOB = 0, 1
MMAP_ZERO_DEVICE = 2**64 - 1   # the aux of an mmap of /dev/zero (an anonymous mapping)
DIGEST_BYTES = 32

REG_NAMES = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
             "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base",
             "gs_base", "ds", "es", "fs", "gs")
EFLAGS_RF = 0x10000    # the resume flag: set or cleared by the kernel on its own, never compared


def register_diff(expected: dict, found: dict) -> list[dict]:
    """The registers that differ, eflags' resume flag masked (docs/checks.md)."""
    diffs = []
    for name in REG_NAMES:
        a, b = expected[name], found[name]
        if name == "eflags":
            a, b = a & ~EFLAGS_RF, b & ~EFLAGS_RF
        if a != b:
            diffs.append({"register": name, "expected": a, "found": b})
    return diffs


HEADER = struct.Struct("<IBBHiiqQQII27Q")
WRITE = struct.Struct("<QII")
assert HEADER.size == 264


def zero_regs() -> dict:
    return dict.fromkeys(REG_NAMES, 0)


def align8(n: int) -> int:
    return (n + 7) & ~7


@dataclass
class Write:
    addr: int
    length: int
    data: bytes | None = None      # inline data
    blob: bytes | None = None      # digest of a blob holding the data


@dataclass
class Event:
    index: int
    kind: int
    flags: int
    tid: int
    nr: int
    result: int
    aux: int
    fpu_digest: int
    regs: dict
    writes: list = field(default_factory=list)
    extra: bytes = b""
    size: int = 0
    process: int = 0       # the process whose stream holds it

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, f"kind{self.kind}")


def decode_at(buf: bytes | memoryview, pos: int, index: int) -> Event:
    if pos + HEADER.size > len(buf):
        raise TraceError(f"event {index} is truncated")
    f = HEADER.unpack_from(buf, pos)
    size, kind, flags, nwrites, tid, nr, result, aux, fpu, extra_len = f[:10]
    if size < HEADER.size or size % 8 or pos + size > len(buf) or kind not in KIND_NAMES:
        raise TraceError(f"event {index} is malformed (size {size}, kind {kind})")
    ev = Event(index, kind, flags, tid, nr, result, aux, fpu, dict(zip(REG_NAMES, f[11:])),
               size=size)
    p, end = pos + HEADER.size, pos + size
    for _ in range(nwrites):
        if p + WRITE.size > end:
            raise TraceError(f"event {index}: its memory writes overrun the event")
        addr, length, how = WRITE.unpack_from(buf, p)
        p += WRITE.size
        if how == WRITE_BLOB:
            ev.writes.append(Write(addr, length, blob=bytes(buf[p:p + DIGEST_BYTES])))
            p += DIGEST_BYTES
        elif how == WRITE_INLINE:
            ev.writes.append(Write(addr, length, data=bytes(buf[p:p + length])))
            p += align8(length)
        else:
            raise TraceError(f"event {index}: unknown write kind {how}")
    if p + align8(extra_len) != end:
        raise TraceError(f"event {index}: its size does not match its contents")
    ev.extra = bytes(buf[p:p + extra_len])
    return ev


def iter_events(buf: bytes | memoryview, first_index: int = 0):
    pos, index = 0, first_index
    while pos < len(buf):
        ev = decode_at(buf, pos, index)
        yield ev
        pos += ev.size
        index += 1


PREFIX = struct.Struct("<IBBHii")     # size, kind, flags, nwrites, tid, nr: HEADER's start


def iter_events_where(buf: bytes | memoryview, first_index: int, wanted):
    """The events for which wanted(kind, flags, nr) holds, decoded; the others only stepped
    over (their headers read, nothing else: a scan of a long stream for a few of them)."""
    pos, index = 0, first_index
    while pos < len(buf):
        if pos + HEADER.size > len(buf):
            raise TraceError(f"event {index} is truncated")
        size, kind, flags, _nwrites, _tid, nr = PREFIX.unpack_from(buf, pos)
        if size < HEADER.size or size % 8 or pos + size > len(buf):
            decode_at(buf, pos, index)      # raises, saying what is wrong
        if wanted(kind, flags, nr):
            yield decode_at(buf, pos, index)
        pos += size
        index += 1


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (align8(len(data)) - len(data))


def encode(kind: int, *, regs: dict, tid: int, nr: int = 0, result: int = 0, aux: int = 0,
           flags: int = 0, fpu_digest: int = 0, writes=(), extra: bytes = b"") -> bytes:
    """writes: Write objects, or (addr, data) pairs for inline data."""
    body = bytearray()
    for w in writes:
        if not isinstance(w, Write):
            w = Write(w[0], len(w[1]), data=w[1])
        if w.blob is not None:
            body += WRITE.pack(w.addr, w.length, WRITE_BLOB) + w.blob
        else:
            body += WRITE.pack(w.addr, len(w.data), WRITE_INLINE) + _pad(w.data)
    body += _pad(extra)
    size = HEADER.size + len(body)
    head = HEADER.pack(size, kind, flags, len(writes), tid, nr, result, aux, fpu_digest,
                       len(extra), 0, *(regs[n] for n in REG_NAMES))
    return head + bytes(body)


def reencode(ev: Event) -> bytes:
    return encode(ev.kind, regs=ev.regs, tid=ev.tid, nr=ev.nr, result=ev.result, aux=ev.aux,
                  flags=ev.flags, fpu_digest=ev.fpu_digest, writes=ev.writes, extra=ev.extra)


BUFFERED = struct.Struct("<IHHiiq6QQQ")     # struct rrv_buffered_syscall
assert BUFFERED.size == 88


@dataclass
class BufferedSyscall:
    """One record of a FLUSH event: a syscall the preload buffered (docs/trace-format.md)."""
    nr: int
    result: int
    args: tuple
    site: int
    sent_digest: int | None          # None: it sent nothing
    writes: list
    pipe: tuple | None = None        # (inode, hash, direction) of a pipe's bytes

    def as_event(self, parent: Event) -> Event:
        """The record as a SYSCALL event (for formatting and cross-process facts)."""
        regs = zero_regs()
        for name, value in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), self.args):
            regs[name] = value
        regs["orig_rax"] = self.nr
        extra = PIPE_IO.pack(*self.pipe, 0) if self.pipe else b""
        return Event(parent.index, SYSCALL, EF_PIPE if self.pipe else 0, parent.tid, self.nr,
                     self.result, self.sent_digest or 0, 0, regs, self.writes, extra,
                     process=parent.process)


def buffered_syscalls(ev: Event) -> list[BufferedSyscall]:
    """The records of a FLUSH event, validated: TraceError naming the flush and the record."""
    data, pos, out = ev.extra, 0, []
    while pos < len(data):
        where = f"event {ev.index} (flush), buffered syscall {len(out)}"
        if pos + BUFFERED.size > len(data):
            raise TraceError(f"{where} is truncated")
        size, nwrites, flags, nr, _res, result, *rest = BUFFERED.unpack_from(data, pos)
        args, site, sent = tuple(rest[:6]), rest[6], rest[7]
        if size < BUFFERED.size or size % 8 or pos + size > len(data) or flags & ~(BF_SENT | BF_PIPE):
            raise TraceError(f"{where} is malformed (size {size}, flags {flags:#x})")
        p, end, writes = pos + BUFFERED.size, pos + size, []
        for _ in range(nwrites):
            if p + WRITE.size > end:
                raise TraceError(f"{where}: its memory writes overrun it")
            addr, length, how = WRITE.unpack_from(data, p)
            if how != WRITE_INLINE or p + WRITE.size + align8(length) > end:
                raise TraceError(f"{where}: write at {addr:#x} is malformed")
            writes.append(Write(addr, length, data=bytes(data[p + WRITE.size:p + WRITE.size + length])))
            p += WRITE.size + align8(length)
        pipe = None
        if flags & BF_PIPE:
            if p + PIPE_IO.size > end:
                raise TraceError(f"{where}: its pipe record overruns it")
            pipe = PIPE_IO.unpack_from(data, p)[:3]
            p += PIPE_IO.size
        if p != end:
            raise TraceError(f"{where}: its size does not match its contents")
        out.append(BufferedSyscall(nr, result, args, site, sent if flags & BF_SENT else None,
                                   writes, pipe))
        pos = end
    if len(out) != ev.nr:
        raise TraceError(f"event {ev.index} (flush) says {ev.nr} buffered syscalls, holds {len(out)}")
    return out


def encode_buffered_syscalls(records: list[BufferedSyscall]) -> bytes:
    """A FLUSH event's extra holding these records (the inverse of buffered_syscalls)."""
    out = bytearray()
    for rec in records:
        body = bytearray()
        for w in rec.writes:
            body += WRITE.pack(w.addr, len(w.data), WRITE_INLINE) + _pad(w.data)
        flags = (BF_SENT if rec.sent_digest is not None else 0) | (BF_PIPE if rec.pipe else 0)
        if rec.pipe:
            body += PIPE_IO.pack(*rec.pipe, 0)
        out += BUFFERED.pack(BUFFERED.size + len(body), len(rec.writes), flags, rec.nr, 0,
                             rec.result, *rec.args, rec.site, rec.sent_digest or 0) + body
    return bytes(out)
