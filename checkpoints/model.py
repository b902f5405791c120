"""Reading a checkpoint record from a trace, validated: every field a restore or a comparison
uses has the type and bounds it must have, or the trace is refused (TraceError)."""
from __future__ import annotations

from ..errors import TraceError
from ..events import REG_NAMES
from ..trace import (MAX_MANIFEST, checkpoint_name, file_hash, is_hex_digest, is_int,
                     is_rlimits, is_u64, load_json)
from .inject import MM_FIELDS

U64 = 2**64
TRAPS = ("none", "rdtsc", "other")       # indexed by RRV_TRAP_*
TASK_SIZE = 0x7ffffffff000


def _fail(trace, n, what):
    raise TraceError(f"{trace.path}/{checkpoint_name(n)}: checkpoint {n} is corrupted ({what})")


def _u64(trace, n, value, what) -> int:
    if not is_u64(value):
        _fail(trace, n, what)
    return value


def _digest(trace, n, value, what) -> bytes:
    if not is_hex_digest(value):
        _fail(trace, n, what)
    return bytes.fromhex(value)


def checkpoint_pagemap(trace, ckpt: dict) -> bytes:
    """The checkpoint's page digests (16 bytes per page of its regions, in order)."""
    pagemap = trace.blob(ckpt["pagemap_blob"])
    if len(pagemap) != 16 * ckpt["pages"]:
        raise TraceError(f"{trace.path}: checkpoint {ckpt['id']}: pagemap blob has the wrong size")
    return pagemap


def checkpoint_xstate(trace, ckpt: dict) -> bytes:
    """The checkpoint's XSAVE area; its fpu_digest must be that of the area."""
    from .._native import lib
    xstate = trace.blob(ckpt["xstate_blob"])
    if lib.rrv_fpu_digest_of(xstate, len(xstate)) != ckpt["fpu_digest"]:
        _fail(trace, ckpt["id"], "fpu_digest is not that of its XSAVE area")
    return xstate


def check_contents(trace, ckpt: dict, pages) -> None:
    """Read and check everything a restore of the checkpoint would read (its XSAVE area and
    every page it names), so that a replay that only compares with it fails on damage exactly
    where a restore of it would."""
    checkpoint_xstate(trace, ckpt)
    pagemap = checkpoint_pagemap(trace, ckpt)
    for digest in {pagemap[i:i + 16] for i in range(0, len(pagemap), 16)}:
        pages.page(digest)


def load_checkpoint(trace, n: int) -> dict:
    index = trace.checkpoints
    if not 0 <= n < len(index):
        raise TraceError(f"{trace.path}: no checkpoint {n} (the trace has {len(index)})")
    name = checkpoint_name(n)
    data = trace.read_file(name, MAX_MANIFEST, "checkpoint",
                           f"{trace.path}: checkpoint {n} is missing ({name})")
    if file_hash(data) != index[n]["sha256"]:
        _fail(trace, n, "hash mismatch")
    try:
        c = load_json(data, name)
    except TraceError:
        _fail(trace, n, "not JSON")
    if not isinstance(c, dict) or c.get("id") != n or c.get("event") != index[n]["event"] or \
            not is_int(c["id"]) or not is_int(c["event"]) or \
            c.get("process") != index[n]["process"] or not is_int(c["process"]):
        _fail(trace, n, "id, process or event do not match checkpoints.jsonl")
    if not is_int(c.get("tid")):
        _fail(trace, n, "tid")
    regs = c.get("regs")
    if not isinstance(regs, dict) or set(regs) != set(REG_NAMES):
        _fail(trace, n, "registers")
    for r in REG_NAMES:
        _u64(trace, n, regs[r], f"register {r}")
    for key in ("gadget", "fpu_digest", "pages"):
        _u64(trace, n, c.get(key), key)
    c["xstate_blob"] = _digest(trace, n, c.get("xstate"), "xstate")
    c["pagemap_blob"] = _digest(trace, n, c.get("pagemap"), "pagemap")
    mm = c.get("mm")
    if not isinstance(mm, dict) or set(mm) != set(MM_FIELDS):
        _fail(trace, n, "mm")
    for k, v in mm.items():
        _u64(trace, n, v, f"mm.{k}")
    sig = c.get("signals")
    if not isinstance(sig, dict) or not isinstance(sig.get("actions"), list) or \
            not isinstance(sig.get("altstack"), list) or len(sig["altstack"]) != 3:
        _fail(trace, n, "signals")
    _u64(trace, n, sig.get("mask"), "signal mask")
    for a in sig["actions"]:
        if not isinstance(a, list) or len(a) != 5 or not all(is_u64(v) for v in a) or \
                not 1 <= a[0] <= 64:
            _fail(trace, n, "signal action")
    sp, flags, size = sig["altstack"]
    _u64(trace, n, sp, "altstack")
    _u64(trace, n, size, "altstack")
    if not is_int(flags) or not -2**31 <= flags < 2**31:
        _fail(trace, n, "altstack")
    regions = c.get("regions")
    if not isinstance(regions, list):
        _fail(trace, n, "regions")
    last_end, pages = 0, 0
    for r in regions:
        ok = (isinstance(r, dict) and isinstance(r.get("perms"), str) and len(r["perms"]) == 4
              and isinstance(r.get("path"), str) and is_u64(r.get("offset"))
              and all(is_int(r.get(k)) for k in ("start", "end", "first_page")))
        if ok and "file" in r:      # the files.jsonl index of the file it maps
            ok = is_int(r["file"]) and r["file"] >= 0
        if ok:
            start, end = r["start"], r["end"]
            ok = (start % 4096 == 0 and end % 4096 == 0 and last_end <= start < end <= TASK_SIZE
                  and r["first_page"] == pages)
        if not ok:
            _fail(trace, n, f"region {r!r:.80}")
        last_end = end
        pages += (end - start) // 4096
    if pages != c["pages"]:
        _fail(trace, n, "page count")
    c.setdefault("before_exit", False)   # taken with the process parked before its exit
    if not isinstance(c["before_exit"], bool):
        _fail(trace, n, "before_exit")
    if not is_rlimits(c.setdefault("rlimits", trace.manifest.get("rlimits", []))):
        _fail(trace, n, "rlimits")
    if not is_u64(c.setdefault("personality", 0x0040000)):   # ADDR_NO_RANDOMIZE
        _fail(trace, n, "personality")
    c.setdefault("trap", "none")         # what last set the kernel's per-thread trap state
    if c["trap"] not in TRAPS:
        _fail(trace, n, "trap")
    return c
