"""Which `syscall` instructions of a shared object can be patched for syscall buffering.

The recorder buffers cheap syscalls the rr way: when a bufferable syscall traps at a `syscall`
instruction (0f 05) in a library, it overwrites that instruction and the whole instructions
after it (at least 5 bytes) with a `jmp rel32` to a per-site stub plus `nop` padding. The stub
calls the buffering hook, executes the displaced instructions from its own copy, and jumps back
to site+length. This module decides, from the file alone, whether that rewrite is safe, and
what the displaced instructions are. Anything that does not have the expected shape is refused
(left unpatched: it still works, just unbuffered), never patched wrongly.

A site is patchable when all of these hold (each rule has a key; `site_survey` counts them):
  input              the file is a readable, untruncated ELF64 x86-64 file with an
                     .eh_frame_hdr binary-search table and no text relocations;
  segment            the offset lies in one of its executable PT_LOAD segments;
  no-fde, cfi        an FDE covers the site (found through that table, decodable): its range
                     is "the function". Without one we do not know where the code around the
                     site starts, so we cannot tell instructions apart;
  undecodable        capstone's linear sweep decodes the whole function (what it cannot decode
                     may hide a branch into the patch);
  not-boundary       the site is one of the sweep's instruction boundaries, and a `syscall`
                     (a 0f 05 pair inside another instruction is not a syscall);
  past-function-end  the function holds the whole instructions that make the patch >= 5 bytes;
  control-transfer   none of them transfers control (jmp, jcc, call, ret, loop, int, syscall,
                     ud2, hlt...): run from the stub, it would go or return elsewhere;
  rip-relative       none addresses relative to rip: from the stub it would address elsewhere;
  stack              none uses rsp implicitly (push, pop, leave, enter). The stub runs them on
                     the original stack, so this is only conservative;
  branch-into-patch  no direct branch of the function, of the code its direct jumps leave to
                     (GCC's `.cold` parts have FDEs of their own), and no landing pad of their
                     LSDAs targets site+1 .. site+length-1, the inside of the jmp. A branch to
                     the site itself is fine: it lands on the jmp;
  indirect-jump      the function has no indirect jmp (a jump table's targets are unknown) but
                     tail calls: a jmp through one rip-relative slot (a GOT entry), or one that
                     only padding follows up to the function's end.
One exception to control-transfer and past-function-end (`_ret_tail`): a `syscall; ret` that
ends its function (glibc's getpid and the other small wrappers) may take the `ret` and the
padding after the function, when no FDE covers that padding, it decodes as nop/int3 and no
branch targets inside; its stub then ends in the `ret`.
Debian 12's libc (glibc 2.36) has 529 0f 05 pairs in its text, 524 of them syscalls, 489 patchable
(475 without that exception).

Not checked: a branch into the middle of a function from an unrelated one (compilers do not
emit them; hand-written asm could). Left to the recorder: memory must still hold the file's bytes
when it patches; the stub must step over the red zone before calling the hook; a task stopped
inside the syscall (rip = site+2, inside the jmp once patched) must be moved to the stub's
continuation.

Costs: a file is parsed once per identity (path, device, inode, size, mtime) and read in chunks
as needed; a function is swept once; a plan is cached per (identity, offset). On libc the first
plan costs ~3 ms (1 ms of it capstone's setup), one in a new function ~0.5 ms, a cached one a
stat (~5 us). Nothing parses all of .eh_frame (0.5 s on libc with pyelftools).
"""
from __future__ import annotations

import bisect
import os
import struct
import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import BinaryIO, NamedTuple

import capstone
from capstone import x86
from elftools.common.utils import struct_parse
from elftools.elf.elffile import ELFFile

from .patch_plan import PatchPlan, Refusal

JMP_REL32_SIZE = 5


# What our own decoding of a corrupt file can raise, beyond the bounds checks of _Image.
_MALFORMED = (struct.error, IndexError, ValueError, OverflowError)


class _Refused(Exception):
    def __init__(self, rule: str, reason: str):
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# The file: program headers and the .eh_frame_hdr search table.

Identity = tuple[str, int, int, int, int, int]    # path, dev, inode, size, mtime, ctime


@dataclass(frozen=True)
class _Segment:
    vaddr: int
    offset: int
    filesz: int
    executable: bool


@dataclass(frozen=True)
class _Cie:
    fde_enc: int
    lsda_enc: int | None
    augmented: bool      # 'z': FDEs carry an augmentation data length


_CHUNK = 1 << 16


class _Image:
    """One ELF file's loadable segments and FDE search table. Its bytes are read on demand, in
    chunks: a plan needs the table, one FDE and one function, not the whole file."""

    def __init__(self, identity: Identity, segments: list[_Segment]):
        self.identity = identity
        self.path = identity[0]
        self.segments = segments
        self.table: _SearchTable | None = None
        self.cies: dict[int, _Cie] = {}
        self._chunks: dict[int, bytes] = {}

    def file_bytes(self, offset: int, size: int) -> bytes:
        if offset < 0 or offset + size > self.identity[3]:
            raise _Refused("input", f"{self.path}: truncated ({size} bytes at offset "
                                    f"0x{offset:x} are past its end)")
        first, last = offset // _CHUNK, (offset + max(size, 1) - 1) // _CHUNK
        missing = [c for c in range(first, last + 1) if c not in self._chunks]
        if missing:
            try:
                with _open(self.identity) as f:
                    for c in missing:
                        self._chunks[c] = os.pread(f.fileno(), _CHUNK, c * _CHUNK)
            except OSError as e:
                raise _Refused("input", f"{self.path}: cannot read: {e.strerror or e}") from None
        start = offset - first * _CHUNK
        if first == last:
            return self._chunks[first][start:start + size]
        return b"".join(self._chunks[c] for c in range(first, last + 1))[start:start + size]

    def read(self, vaddr: int, size: int) -> bytes:
        for seg in self.segments:
            if seg.vaddr <= vaddr and vaddr + size <= seg.vaddr + seg.filesz:
                return self.file_bytes(seg.offset + vaddr - seg.vaddr, size)
        raise _Refused("cfi", f"{self.path}: {size} bytes at 0x{vaddr:x} are not in the file")

    def exec_vaddr(self, file_offset: int) -> int:
        for seg in self.segments:
            if seg.executable and seg.offset <= file_offset and \
                    file_offset + 2 <= seg.offset + seg.filesz:
                return seg.vaddr + file_offset - seg.offset
        raise _Refused("segment", f"{self.path}: offset 0x{file_offset:x} is not in an "
                                  "executable PT_LOAD segment")

    def fde_at(self, pc: int) -> int | None:
        """Address of the FDE of the last search-table entry starting at or before pc."""
        assert self.table is not None
        return self.table.fde_at(pc)


class _SearchTable:
    """.eh_frame_hdr's sorted (initial location, FDE address) pairs, decoded only along the
    binary search (decoding all 4000 of libc's costs a millisecond)."""

    def __init__(self, raw: bytes, fmt: str, app: int, hdr: int, pos: int):
        self.raw, self.fmt, self.app, self.hdr, self.pos = raw, fmt, app, hdr, pos
        self.size = struct.calcsize(fmt)
        self.count = len(raw) // (2 * self.size)

    def _field(self, k: int) -> int:
        (value,) = struct.unpack_from(self.fmt, self.raw, k * self.size)
        if self.app == _DATAREL:
            return self.hdr + value
        if self.app == _PCREL:
            return self.pos + k * self.size + value
        return value

    def fde_at(self, pc: int) -> int | None:
        i = bisect.bisect_right(range(self.count), pc, key=lambda j: self._field(2 * j)) - 1
        return self._field(2 * i + 1) if i >= 0 else None


def _identity(path: str) -> Identity:
    st = os.stat(path)
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _open(identity: Identity) -> BinaryIO:
    f = open(identity[0], "rb")
    st = os.fstat(f.fileno())
    if (identity[0], st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
            st.st_ctime_ns) != identity:
        f.close()
        raise _Refused("input", f"{identity[0]}: changed while being read")
    return f


@lru_cache(maxsize=32)
def _image(identity: Identity) -> _Image:
    path = identity[0]
    try:
        with _open(identity) as f:
            if f.read(4) != b"\x7fELF":
                raise _Refused("input", f"{path}: not an ELF file")
            f.seek(0)
            segments, hdr_vaddr, dynamic = _program_headers(path, f)
    except OSError as e:
        raise _Refused("input", f"{path}: cannot read: {e.strerror or e}") from None
    except _Refused:
        raise
    except Exception as e:  # pyelftools' errors on a truncated or corrupt file are many
        raise _Refused("input", f"{path}: malformed ELF ({type(e).__name__}: {e})") from None
    img = _Image(identity, segments)
    if dynamic is not None and _has_textrel(img.file_bytes(*dynamic)):
        raise _Refused("input", f"{path}: has text relocations (memory differs from the file)")
    img.table = _search_table(img, hdr_vaddr)
    return img


def _program_headers(path: str, f: BinaryIO
                     ) -> tuple[list[_Segment], int, tuple[int, int] | None]:
    """PT_LOAD segments, .eh_frame_hdr's address, PT_DYNAMIC's (offset, size)."""
    elf = ELFFile(f)
    if elf.elfclass != 64 or elf["e_machine"] != "EM_X86_64" or not elf.little_endian:
        raise _Refused("input", f"{path}: not an ELF64 x86-64 file")
    size = os.fstat(f.fileno()).st_size
    segments, hdr_vaddr, dynamic = [], None, None
    # Headers only: elf.iter_segments() builds a DynamicSegment, which indexes every section
    # (10 ms on libc).
    for i in range(elf["e_phnum"]):
        ph = struct_parse(elf.structs.Elf_Phdr, f, elf["e_phoff"] + i * elf["e_phentsize"])
        if ph["p_type"] == "PT_LOAD":
            if ph["p_offset"] + ph["p_filesz"] > size:
                raise _Refused("input", f"{path}: truncated (a PT_LOAD segment ends past EOF)")
            segments.append(_Segment(ph["p_vaddr"], ph["p_offset"], ph["p_filesz"],
                                     bool(ph["p_flags"] & _PF_X)))
        elif ph["p_type"] == "PT_GNU_EH_FRAME":
            hdr_vaddr = ph["p_vaddr"]
        elif ph["p_type"] == "PT_DYNAMIC":
            dynamic = (ph["p_offset"], ph["p_filesz"])
    if hdr_vaddr is None:
        raise _Refused("input", f"{path}: has no .eh_frame_hdr (PT_GNU_EH_FRAME)")
    return segments, hdr_vaddr, dynamic


def _has_textrel(dynamic: bytes) -> bool:
    for tag, val in struct.iter_unpack("<qQ", dynamic[:len(dynamic) // 16 * 16]):
        if tag == _DT_NULL:
            break
        if tag == _DT_TEXTREL or (tag == _DT_FLAGS and val & _DF_TEXTREL):
            return True
    return False


_PF_X = 1
_DT_NULL, _DT_TEXTREL, _DT_FLAGS, _DF_TEXTREL = 0, 22, 30, 0x4

# DW_EH_PE pointer encodings: low nibble = format, high nibble = application.
_DW_EH_PE_OMIT = 0xFF
_FIXED_FORMATS = {0x00: "<Q", 0x02: "<H", 0x03: "<I", 0x04: "<Q",
                  0x0A: "<h", 0x0B: "<i", 0x0C: "<q"}
_ULEB128, _SLEB128 = 0x01, 0x09
_PCREL, _DATAREL = 0x10, 0x30


def _search_table(img: _Image, hdr: int) -> _SearchTable:
    version, ptr_enc, count_enc, table_enc = img.read(hdr, 4)
    if version != 1:
        raise _Refused("input", f"{img.path}: .eh_frame_hdr version {version}, not 1")
    if _DW_EH_PE_OMIT in (ptr_enc, count_enc, table_enc):
        raise _Refused("input", f"{img.path}: .eh_frame_hdr has no search table")
    _, pos = _decode_pointer(img, ptr_enc, hdr + 4, hdr)
    count, pos = _decode_pointer(img, count_enc, pos, hdr)
    fmt = _FIXED_FORMATS.get(table_enc & 0x0F)
    app = table_enc & 0x70
    if fmt is None or app not in (0, _PCREL, _DATAREL) or table_enc & 0x80:
        raise _Refused("input", f"{img.path}: unsupported .eh_frame_hdr table encoding "
                                f"0x{table_enc:02x}")
    return _SearchTable(img.read(pos, count * 2 * struct.calcsize(fmt)), fmt, app, hdr, pos)


def _uleb(img: _Image, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = img.read(pos, 1)[0]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _sleb(img: _Image, pos: int) -> tuple[int, int]:
    start = pos
    value, pos = _uleb(img, pos)
    bits = 7 * (pos - start)
    if value & (1 << (bits - 1)):
        value -= 1 << bits
    return value, pos


def _decode_pointer(img: _Image, enc: int, pos: int, datarel: int | None = None,
                    apply: bool = True) -> tuple[int, int]:
    """The value encoded with `enc` at pos, and the position after it."""
    fmt = enc & 0x0F
    if fmt == _ULEB128:
        value, end = _uleb(img, pos)
    elif fmt == _SLEB128:
        value, end = _sleb(img, pos)
    elif fmt in _FIXED_FORMATS:
        code = _FIXED_FORMATS[fmt]
        (value,), end = struct.unpack(code, img.read(pos, struct.calcsize(code))), \
            pos + struct.calcsize(code)
    else:
        raise _Refused("cfi", f"unsupported pointer format 0x{enc:02x} at 0x{pos:x}")
    if not apply:
        return value, end
    if enc & 0x80:
        raise _Refused("cfi", f"unsupported indirect pointer encoding 0x{enc:02x} at 0x{pos:x}")
    app = enc & 0x70
    if app == 0:
        return value, end
    if app == _PCREL:
        return (pos + value) & (2**64 - 1), end
    if app == _DATAREL and datarel is not None:
        return datarel + value, end
    raise _Refused("cfi", f"unsupported pointer application 0x{enc:02x} at 0x{pos:x}")


def _entry_length(img: _Image, pos: int) -> tuple[int, int]:
    (length,) = struct.unpack("<I", img.read(pos, 4))
    if length == 0xFFFFFFFF:
        (length,) = struct.unpack("<Q", img.read(pos + 4, 8))
        return length, pos + 12
    return length, pos + 4


def _cie(img: _Image, pos: int) -> _Cie:
    if pos in img.cies:
        return img.cies[pos]
    _, pos_id = _entry_length(img, pos)
    version = img.read(pos_id + 4, 1)[0]
    if struct.unpack("<I", img.read(pos_id, 4))[0] != 0 or version not in (1, 3):
        raise _Refused("cfi", f"no CIE (version 1 or 3) at 0x{pos:x}")
    p = pos_id + 5
    aug = b""
    while (c := img.read(p, 1)) != b"\0":
        aug += c
        p += 1
    p += 1
    if aug.startswith(b"eh"):
        p += 8
    _, p = _uleb(img, p)          # code alignment
    _, p = _sleb(img, p)          # data alignment
    p = p + 1 if version == 1 else _uleb(img, p)[1]  # return address register
    fde_enc, lsda_enc = 0x00, None
    if aug.startswith(b"z"):
        _, p = _uleb(img, p)
        for ch in aug[1:].decode("latin-1"):
            if ch == "R":
                fde_enc, p = img.read(p, 1)[0], p + 1
            elif ch == "L":
                lsda_enc, p = img.read(p, 1)[0], p + 1
            elif ch == "P":
                enc = img.read(p, 1)[0]
                _, p = _decode_pointer(img, enc & 0x0F, p + 1)
            elif ch not in "SBG":
                raise _Refused("cfi", f"CIE at 0x{pos:x}: unknown augmentation {aug!r}")
    elif aug not in (b"", b"eh"):
        raise _Refused("cfi", f"CIE at 0x{pos:x}: unknown augmentation {aug!r}")
    cie = img.cies[pos] = _Cie(fde_enc, None if lsda_enc == _DW_EH_PE_OMIT else lsda_enc,
                               aug.startswith(b"z"))
    return cie


def _fde(img: _Image, pos: int) -> tuple[int, int, int | None]:
    """(pc_begin, pc_end, LSDA address or None) of the FDE at pos."""
    length, pos_id = _entry_length(img, pos)
    (cie_delta,) = struct.unpack("<I", img.read(pos_id, 4))
    if length == 0 or cie_delta == 0:
        raise _Refused("cfi", f"no FDE at 0x{pos:x}")
    cie = _cie(img, pos_id - cie_delta)
    begin, p = _decode_pointer(img, cie.fde_enc, pos_id + 4)
    size, p = _decode_pointer(img, cie.fde_enc, p, apply=False)
    lsda = None
    if cie.augmented and cie.lsda_enc is not None:
        _, p = _uleb(img, p)
        # A zero LSDA pointer (before applying pcrel) means none.
        if _decode_pointer(img, cie.lsda_enc, p, apply=False)[0]:
            lsda, _ = _decode_pointer(img, cie.lsda_enc, p)
    return begin, begin + size, lsda


def _landing_pads(img: _Image, lsda: int, func_begin: int) -> list[int]:
    lp_enc, p = img.read(lsda, 1)[0], lsda + 1
    lp_start = func_begin
    if lp_enc != _DW_EH_PE_OMIT:
        lp_start, p = _decode_pointer(img, lp_enc, p)
    ttype_enc, p = img.read(p, 1)[0], p + 1
    if ttype_enc != _DW_EH_PE_OMIT:
        _, p = _uleb(img, p)
    cs_enc, p = img.read(p, 1)[0], p + 1
    table_len, p = _uleb(img, p)
    end, pads = p + table_len, []
    while p < end:
        _, p = _decode_pointer(img, cs_enc, p, apply=False)   # call-site start
        _, p = _decode_pointer(img, cs_enc, p, apply=False)   # call-site length
        pad, p = _decode_pointer(img, cs_enc, p, apply=False)
        _, p = _uleb(img, p)                                  # action
        if pad:
            pads.append(lp_start + pad)
    return pads


# ---------------------------------------------------------------------------------------------
# The function: a linear capstone sweep of its FDE's range.

class _Insn(NamedTuple):
    address: int
    size: int
    text: str
    transfers: bool      # moves control elsewhere (or traps)


@dataclass(frozen=True)
class _Function:
    begin: int
    end: int
    insns: tuple[_Insn, ...]
    index: dict[int, int]               # instruction address -> position in insns
    undecodable: int | None             # where the sweep stopped, if before end
    targets: tuple[tuple[int, int], ...]  # (source, target) of direct branches
    pads: tuple[int, ...]               # landing pads of its LSDA (reached by the unwinder)
    exits: tuple[int, ...]              # targets of direct jumps outside [begin, end)
    indirect: int | None                # first indirect jmp that is not a tail call


_REFUSED_MNEMONICS = {"syscall", "sysenter", "sysexit", "sysret", "hlt",
                      "ud0", "ud1", "ud2", "int", "int1", "int3", "into"}
_TRANSFER_GROUPS = {capstone.CS_GRP_JUMP, capstone.CS_GRP_CALL, capstone.CS_GRP_RET,
                    capstone.CS_GRP_INT, capstone.CS_GRP_IRET, capstone.CS_GRP_BRANCH_RELATIVE,
                    capstone.CS_GRP_PRIVILEGE}
_PADDING_MNEMONICS = {"nop", "int3"}


@lru_cache(maxsize=1)
def _capstone() -> capstone.Cs:
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = True
    return md


def _find_fde(img: _Image, pc: int) -> tuple[int, int, int | None]:
    fde = img.fde_at(pc)
    if fde is None:
        raise _Refused("no-fde", f"no FDE covers 0x{pc:x}")
    begin, end, lsda = _fde(img, fde)
    if not begin <= pc < end:
        raise _Refused("no-fde", f"no FDE covers 0x{pc:x}")
    return begin, end, lsda


def _rip_slot(ci: capstone.CsInsn) -> bool:
    return any(op.type == x86.X86_OP_MEM and op.mem.base == x86.X86_REG_RIP
               for op in ci.operands)


@lru_cache(maxsize=512)
def _function(identity: Identity, begin: int, end: int, lsda: int | None) -> _Function:
    img = _image(identity)
    insns: list[_Insn] = []
    targets, exits, indirect = [], [], []
    # Only groups are read for every instruction: operands cost ~5 us each in Python.
    for ci in _capstone().disasm(img.read(begin, end - begin), begin):
        groups = set(ci.groups)
        insns.append(_Insn(ci.address, ci.size, f"{ci.mnemonic} {ci.op_str}".rstrip(),
                           bool(groups & _TRANSFER_GROUPS) or ci.mnemonic in _REFUSED_MNEMONICS))
        if capstone.CS_GRP_BRANCH_RELATIVE in groups:
            target = ci.operands[0].imm
            targets.append((ci.address, target))
            if capstone.CS_GRP_JUMP in groups and not begin <= target < end:
                exits.append(target)
        elif capstone.CS_GRP_JUMP in groups and not _rip_slot(ci):
            # A jmp through one rip-relative slot is a tail call through the GOT; any other
            # indirect jmp may be a jump table, unless only padding follows it.
            indirect.append(len(insns) - 1)
    stop = insns[-1].address + insns[-1].size if insns else begin
    pads = _landing_pads(img, lsda, begin) if lsda is not None else []
    not_tail = next((insns[i].address for i in indirect
                     if any(insn.text.split(" ")[0] not in _PADDING_MNEMONICS
                            for insn in insns[i + 1:])), None)
    return _Function(begin, end, tuple(insns), {insn.address: i for i, insn in enumerate(insns)},
                     stop if stop < end else None, tuple(targets), tuple(pads), tuple(exits),
                     not_tail)


def _operand_facts(img: _Image, insn: _Insn) -> tuple[bool, bool]:
    """(rip-relative, uses rsp implicitly) of one instruction, decoded again with operands."""
    ci = next(_capstone().disasm(img.read(insn.address, insn.size), insn.address))
    rsp = x86.X86_REG_RSP in ci.regs_read or x86.X86_REG_RSP in ci.regs_write
    return _rip_slot(ci) or x86.X86_REG_RIP in ci.regs_read, rsp


# ---------------------------------------------------------------------------------------------
# The rules.

def _displaced(fn: _Function, site: int) -> tuple[list[_Insn], bool]:
    """The whole instructions after the syscall up to 5 patched bytes, and whether there are
    enough of them before the function ends (the sweep never decodes past it); short ones are
    still returned to be judged."""
    out: list[_Insn] = []
    for insn in fn.insns[fn.index[site] + 1:]:
        if 2 + sum(i.size for i in out) >= JMP_REL32_SIZE:
            break
        out.append(insn)
    return out, 2 + sum(i.size for i in out) >= JMP_REL32_SIZE


def _site_function(identity: Identity, img: _Image, site: int) -> _Function:
    fn = _function(identity, *_find_fde(img, site))
    if fn.undecodable is not None and fn.undecodable <= site:
        raise _Refused("undecodable", f"capstone cannot decode 0x{fn.undecodable:x}, before "
                                      f"the site 0x{site:x}")
    if site not in fn.index:
        raise _Refused("not-boundary", f"0x{site:x} is not an instruction boundary of the "
                                       f"function at 0x{fn.begin:x}")
    if fn.insns[fn.index[site]].text != "syscall":
        raise _Refused("not-boundary", f"0x{site:x} decodes as "
                                       f"`{fn.insns[fn.index[site]].text}`, not syscall")
    return fn


def _failures(identity: Identity, img: _Image, fn: _Function, site: int
              ) -> tuple[list[_Refused], list[_Insn]]:
    """Every rule the syscall at site breaks, most telling first, and the displaced
    instructions."""
    fails: list[_Refused] = []
    displaced, complete = _displaced(fn, site)
    for insn in displaced:
        rip_relative, implicit_rsp = _operand_facts(img, insn)
        if insn.transfers:
            fails.append(_Refused("control-transfer", f"`{insn.text}` at 0x{insn.address:x} "
                                                      "transfers control"))
        elif rip_relative:
            fails.append(_Refused("rip-relative", f"`{insn.text}` at 0x{insn.address:x} is "
                                                  "rip-relative"))
        elif implicit_rsp:
            fails.append(_Refused("stack", f"`{insn.text}` at 0x{insn.address:x} uses the "
                                           "stack pointer implicitly"))
    if not complete:
        fails.append(_Refused("past-function-end",
                              f"fewer than {JMP_REL32_SIZE} bytes of whole instructions from "
                              f"the syscall at 0x{site:x} to the function end 0x{fn.end:x}"))
    if fn.undecodable is not None:
        fails.append(_Refused("undecodable", f"capstone cannot decode 0x{fn.undecodable:x}, "
                                             f"after the site 0x{site:x}"))
    try:
        _check_branches(identity, img, fn, site, 2 + sum(i.size for i in displaced))
    except _Refused as r:
        fails.append(r)
    if fn.indirect is not None:
        fails.append(_Refused("indirect-jump", f"the function at 0x{fn.begin:x} has an "
                                               f"indirect jmp at 0x{fn.indirect:x}"))
    return fails, displaced


def _check_branches(identity: Identity, img: _Image, fn: _Function, site: int,
                    length: int) -> None:
    sources = [fn]
    for exit_ in sorted(set(fn.exits)):
        try:
            bounds = _find_fde(img, exit_)
        except _Refused as r:
            if r.rule == "no-fde":
                continue    # not a part of a compiled function (a PLT entry, say)
            raise
        fragment = _function(identity, *bounds)
        if fragment.undecodable is not None:
            raise _Refused("branch-into-patch",
                           f"the code at 0x{fragment.begin:x} jumped to from the function "
                           f"cannot be decoded at 0x{fragment.undecodable:x}")
        sources.append(fragment)
    for source_fn in sources:
        for source, target in source_fn.targets:
            if site < target < site + length:
                raise _Refused("branch-into-patch",
                               f"a branch at 0x{source:x} targets inside the patch "
                               f"(0x{target:x})")
        for pad in source_fn.pads:
            if site < pad < site + length:
                raise _Refused("branch-into-patch",
                               f"an exception landing pad is inside the patch (0x{pad:x})")


def _covered(img: _Image, pc: int) -> bool:
    """Does a function (an FDE) cover pc?"""
    try:
        _find_fde(img, pc)
        return True
    except _Refused:
        return False


def _ret_tail(identity: Identity, img: _Image, fn: _Function, site: int) -> PatchPlan | None:
    """A `syscall; ret` at the very end of a function (glibc's getpid, the other small
    wrappers): the jump may also take the padding after the function, which no function covers
    and nothing runs, if it is padding (nop, int3) and no branch targets the `ret`. The stub
    then ends in that `ret` (recorder/patch.py)."""
    i = fn.index[site]
    if i + 2 != len(fn.insns) or fn.insns[i + 1].text != "ret" or fn.insns[i + 1].size != 1:
        return None
    pad, need = site + 3, JMP_REL32_SIZE - 3
    if fn.end != pad or any(_covered(img, pad + k) for k in range(need)):
        return None
    code = img.read(pad, 16)
    covered = 0
    for ci in _capstone().disasm(code, pad):
        if ci.mnemonic not in _PADDING_MNEMONICS:
            return None
        covered += ci.size
        if covered >= need:
            break
    if covered < need:
        return None
    try:
        _check_branches(identity, img, fn, site, JMP_REL32_SIZE)
    except _Refused:
        return None
    return PatchPlan(JMP_REL32_SIZE, img.read(site + 2, JMP_REL32_SIZE - 2), "ret (then padding)")


def _plan_from(identity: Identity, img: _Image, site: int) -> PatchPlan:
    fn = _site_function(identity, img, site)
    fails, displaced = _failures(identity, img, fn, site)
    if fails:
        tail = _ret_tail(identity, img, fn, site)
        if tail is not None:
            return tail
        raise fails[0]
    raw = b"".join(img.read(insn.address, insn.size) for insn in displaced)
    return PatchPlan(2 + len(raw), raw, "; ".join(insn.text for insn in displaced))


# ---------------------------------------------------------------------------------------------
# The API.

def plan_site(path: str, file_offset: int) -> PatchPlan | Refusal:
    """Can the `syscall` instruction at this file offset of this ELF shared object be patched?"""
    try:
        identity = _identity(path)
    except (OSError, ValueError) as e:
        return Refusal(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}",
                       lasting=False)
    return _plan(identity, file_offset)


@lru_cache(maxsize=4096)
def _plan(identity: Identity, file_offset: int) -> PatchPlan | Refusal:
    try:
        img = _image(identity)
        return _plan_from(identity, img, img.exec_vaddr(file_offset))
    except _Refused as r:
        return Refusal(r.reason, lasting=r.rule != "input")
    except _MALFORMED as e:
        return Refusal(f"{identity[0]}: malformed file near offset 0x{file_offset:x} "
                       f"({type(e).__name__}: {e})")


def site_survey(path: str) -> dict:
    """Every 0f 05 byte pair in the executable PT_LOAD segments: counts of candidates, real
    instruction boundaries, patchable sites, and refusals by reason (for bench/ and docs).

    `refusals` blames each refused candidate on the first rule it breaks; `rule_costs` counts,
    for each rule, the candidates that break it whatever else they break (except not-boundary:
    those are not syscalls)."""
    start = time.perf_counter()
    try:
        identity = _identity(path)
        img = _image(identity)
    except (OSError, ValueError) as e:
        return {"path": path,
                "error": f"{path}: cannot read: {getattr(e, 'strerror', None) or e}"}
    except _Refused as r:
        return {"path": path, "error": r.reason}
    candidates = boundaries = patchable = 0
    refusals: Counter[str] = Counter()
    costs: Counter[str] = Counter()
    for seg in img.segments:
        if not seg.executable:
            continue
        code = img.file_bytes(seg.offset, seg.filesz)
        pos = code.find(b"\x0f\x05")
        while pos >= 0:
            candidates += 1
            site = seg.vaddr + pos
            try:
                fn = _site_function(identity, img, site)
                boundaries += 1
                fails, _ = _failures(identity, img, fn, site)
                if fails and _ret_tail(identity, img, fn, site) is not None:
                    fails = []
            except _Refused as r:
                fails = [r]
            except _MALFORMED as e:
                fails = [_Refused("input", f"malformed file ({type(e).__name__}: {e})")]
            if fails:
                refusals[fails[0].rule] += 1
            else:
                patchable += 1
            for rule in {f.rule for f in fails} - {"not-boundary"}:
                costs[rule] += 1
            pos = code.find(b"\x0f\x05", pos + 2)
    return {"path": path, "candidates": candidates, "boundaries": boundaries,
            "patchable": patchable, "refusals": dict(refusals.most_common()),
            "rule_costs": dict(costs.most_common()),
            "seconds": round(time.perf_counter() - start, 3)}
