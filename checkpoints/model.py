"""Reading a checkpoint record from a trace, validated: every field a restore or a comparison
uses has the type and bounds it must have, or the trace is refused (TraceError)."""
from __future__ import annotations

import json
import os

from ..errors import TraceError
from ..events import REG_NAMES
from ..trace import checkpoint_path
from .inject import MM_FIELDS

U64 = 2**64
TASK_SIZE = 0x7ffffffff000


def _fail(trace, n, what):
    raise TraceError(f"{trace.path}: checkpoint {n} is corrupted ({what})")


def _u64(trace, n, value, what) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < U64:
        _fail(trace, n, what)
    return value


def _digest(trace, n, value, what) -> bytes:
    try:
        d = bytes.fromhex(value)
    except (TypeError, ValueError):
        d = b""
    if len(d) != 32:
        _fail(trace, n, what)
    return d


def checkpoint_pagemap(trace, ckpt: dict) -> bytes:
    """The checkpoint's page digests (16 bytes per page of its regions, in order)."""
    pagemap = trace.blob(ckpt["pagemap_blob"])
    if len(pagemap) != 16 * ckpt["pages"]:
        raise TraceError(f"{trace.path}: checkpoint {ckpt['id']}: pagemap blob has the wrong size")
    return pagemap


def load_checkpoint(trace, n: int) -> dict:
    index = trace.checkpoints
    if not 0 <= n < len(index):
        raise TraceError(f"{trace.path}: no checkpoint {n} (the trace has {len(index)})")
    path = checkpoint_path(trace.path, n)
    try:
        with open(path, "rb") as f:
            c = json.loads(f.read(16 << 20))
    except FileNotFoundError:
        raise TraceError(f"{trace.path}: checkpoint {n} is missing ({path})") from None
    except ValueError:
        _fail(trace, n, "not JSON")
    if not isinstance(c, dict) or c.get("id") != n or c.get("event") != index[n]["event"]:
        _fail(trace, n, "id or event do not match checkpoints.jsonl")
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
    try:
        _u64(trace, n, sig["mask"], "signal mask")
        for a in sig["actions"]:
            if len(a) != 5 or not 1 <= a[0] <= 64:
                _fail(trace, n, "signal action")
            for v in a:
                _u64(trace, n, v, "signal action")
        sp, flags, size = sig["altstack"]
        _u64(trace, n, sp, "altstack")
        _u64(trace, n, size, "altstack")
        if not isinstance(flags, int) or isinstance(flags, bool) or not -2**31 <= flags < 2**31:
            _fail(trace, n, "altstack")
    except (TypeError, KeyError, ValueError):
        _fail(trace, n, "signals")
    regions = c.get("regions")
    if not isinstance(regions, list):
        _fail(trace, n, "regions")
    last_end, pages = 0, 0
    for r in regions:
        try:
            start, end, first = r["start"], r["end"], r["first_page"]
            ok = (isinstance(r["perms"], str) and len(r["perms"]) == 4 and
                  isinstance(r["path"], str) and isinstance(start, int) and
                  isinstance(end, int) and start % 4096 == 0 and end % 4096 == 0 and
                  last_end <= start < end <= TASK_SIZE and first == pages and
                  isinstance(r["offset"], int) and 0 <= r["offset"] < U64)
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            _fail(trace, n, f"region {r!r:.80}")
        last_end = end
        pages += (end - start) // 4096
    if pages != c["pages"]:
        _fail(trace, n, "page count")
    return c
