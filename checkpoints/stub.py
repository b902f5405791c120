"""The restorer: a minimal static ELF that restore exec's to get an empty, traced process.

It never runs on its own: its one page holds a `syscall` instruction that the restorer drives
by syscall injection (unmapping everything else, mapping the checkpoint's regions, setting
signal state), and is unmapped last. Built here in Python, byte by byte, so restoring needs no
file from any machine and no compiler."""
from __future__ import annotations

import os
import struct

# Far from where Linux places anything of a non-randomized x86-64 process (programs near
# 0x400000 or 0x555555554000, mmaps below 0x7ffff7fff000, the stack at the top).
BASE = 0x200000000000
SCRATCH = BASE + 0x1000      # a page for syscall arguments, mapped only while restoring
CODE_OFFSET = 0x40 + 0x38           # after the ELF header and the one program header
SYSCALL_GADGET = BASE + CODE_OFFSET  # the `syscall` instruction
CODE = b"\x0f\x05\xcc\xeb\xfd\x0f\x31"   # syscall; int3; jmp back to int3; rdtsc
RDTSC = SYSCALL_GADGET + 5          # a trapped rdtsc sets the kernel's trap state as one did


def restorer_elf() -> bytes:
    code_off = CODE_OFFSET
    entry = BASE + code_off + 2       # the int3: never reached, restore drives it
    ehdr = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0,
                       2, 0x3e, 1, entry, 0x40, 0, 0, 0x40, 0x38, 1, 0, 0, 0)
    size = code_off + len(CODE)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, BASE, BASE, size, size, 0x1000)
    return ehdr + phdr + CODE


def restorer_fd() -> int:
    """A memfd holding the restorer; a child exec's it by the path /proc/PARENT/fd/N, so it
    need not (and does not) inherit the fd."""
    fd = os.memfd_create("rrverify-restorer", os.MFD_CLOEXEC)
    os.write(fd, restorer_elf())
    return fd
