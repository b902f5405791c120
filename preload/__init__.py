"""The syscall-buffering library rrverify preloads into recorded processes (syscallbuf.c,
compiled by `pip install` into librrvpreload.so beside this file), and what the verifier needs
to know of it: where its code is, read from its ELF with pyelftools."""
from __future__ import annotations

import functools
import io
import os

from rrverify.digests import hex_digest

LIBRARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "librrvpreload.so")
ENV_MARKER = "RRVERIFY_SYSCALLBUF=1"   # the preload stays inert without it


def available() -> bool:
    return os.path.exists(LIBRARY)


@functools.lru_cache(maxsize=1)
def digest() -> str:
    """The library's SHA-256 (hex): how the trace's files.jsonl names it."""
    with open(LIBRARY, "rb") as f:
        return hex_digest(f.read())


@functools.lru_cache(maxsize=8)
def code_ranges(image: bytes) -> tuple[tuple[int, int], ...]:
    """The preload's executable segments, as (start, end) ELF virtual addresses: code no
    ptrace stop may find a thread in (docs/checks.md, the syscallbuf invariant). Empty if the
    image is not an ELF file."""
    from elftools.common.exceptions import ELFError     # (replay only: recording needs none)
    from elftools.elf.elffile import ELFFile
    try:
        elf = ELFFile(io.BytesIO(image))
        return tuple((seg["p_vaddr"], seg["p_vaddr"] + seg["p_memsz"])
                     for seg in elf.iter_segments()
                     if seg["p_type"] == "PT_LOAD" and seg["p_flags"] & 1)
    except (ELFError, ValueError, KeyError):
        return ()
