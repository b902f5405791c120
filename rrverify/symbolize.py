"""Addresses to `function+offset (file)`, with pyelftools, for divergence reports."""
from __future__ import annotations

import bisect
import io

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile


class ElfSymbols:
    def __init__(self, data: bytes):
        elf = ELFFile(io.BytesIO(data))
        self.loads = [(s["p_offset"], s["p_filesz"], s["p_vaddr"]) for s in elf.iter_segments()
                      if s["p_type"] == "PT_LOAD"]
        syms = {}
        for name in (".symtab", ".dynsym"):
            sec = elf.get_section_by_name(name)
            if sec is None:
                continue
            for s in sec.iter_symbols():
                if s["st_info"]["type"] == "STT_FUNC" and s["st_value"] and s.name:
                    syms.setdefault(s["st_value"], (s.name, s["st_size"]))
        self.starts = sorted(syms)
        self.syms = syms

    def vaddr_of_offset(self, offset: int) -> int | None:
        for off, size, vaddr in self.loads:
            if off <= offset < off + max(size, 1):
                return offset - off + vaddr
        return None

    def lookup(self, vaddr: int) -> str | None:
        i = bisect.bisect_right(self.starts, vaddr) - 1
        if i < 0:
            return None
        start = self.starts[i]
        name, size = self.syms[start]
        if size and vaddr >= start + size:
            return None
        return f"{name}+{vaddr - start:#x}"


class Symbolizer:
    """Knows which file is mapped where (from the replay's own record of mappings)."""

    def __init__(self, mappings, load_file, file_path):
        self.mappings = mappings          # [(start, end, file index, file offset)], newest last
        self.load_file = load_file        # index -> bytes
        self.file_path = file_path        # index -> path
        self._elfs: dict[int, ElfSymbols | None] = {}

    def __call__(self, addr: int) -> str:
        for start, end, index, offset in reversed(self.mappings):
            if start <= addr < end:
                path = self.file_path(index)
                elf = self._elf(index)
                where = None
                if elf is not None:
                    vaddr = elf.vaddr_of_offset(addr - start + offset)
                    where = elf.lookup(vaddr) if vaddr is not None else None
                return f"{where or hex(addr - start + offset)} in {path}"
        return "not in a mapped file"

    def _elf(self, index: int) -> ElfSymbols | None:
        if index not in self._elfs:
            try:
                self._elfs[index] = ElfSymbols(self.load_file(index))
            except (ELFError, Exception):  # not an ELF file, or unreadable: no symbols
                self._elfs[index] = None
        return self._elfs[index]
