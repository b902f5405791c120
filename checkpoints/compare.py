"""Comparing a replayed process, stopped where a checkpoint was taken, with that checkpoint:
registers, FPU/vector state, signal state, brk, and memory region by region."""
from __future__ import annotations

from .. import exec_image, host
from .._native import ffi, lib
from ..events import register_diff
from ..tracee import getregs
from .capture import (CHUNK_PAGES, SKIP_REGIONS, private_anonymous, read_region,
                      region_chunks, task_attributes, untouched_page_runs)
from .model import check_contents, checkpoint_pagemap
from .pages import PAGE, UNREADABLE, ZERO, ZERO_PAGE, page_digest
from .inject import TraceeMemory, VerifierSite

MAX_REPORTED_REGIONS = 8


def cpu_identity(cpuid_leaves: dict) -> bytes:
    """The core's APIC ids as a program reads them with cpuid: the 8-bit initial APIC id
    (leaf 1, EBX bits 31-24) and the 32-bit x2APIC id (leaf 0xB, EDX)."""
    leaf1 = cpuid_leaves.get("0x1.0", [0, 0, 0, 0])
    leafb = cpuid_leaves.get("0xb.0", [0, 0, 0, 0])
    return bytes([leaf1[1] >> 24]) + leafb[3].to_bytes(4, "little")


def identity_pairs(recorded_host: dict) -> set[tuple[int, int]]:
    """(recorded byte, this core's byte) pairs by which the cores' APIC ids differ. cpuid
    cannot be trapped here, so a replay on another core reads its own APIC id: memory that
    differs from a checkpoint only by such bytes is that, and is tolerated (and counted)."""
    here = cpu_identity({"0x1.0": list(host.cpuid(1)), "0xb.0": list(host.cpuid(0xb, 0))})
    recorded = [cpu_identity(recorded_host.get("cpuid", {}))]
    for ident in recorded_host.get("core_identities") or []:   # the cores processes ran on
        if isinstance(ident, str) and len(ident) == 10:
            try:
                recorded.append(bytes.fromhex(ident))
            except ValueError:
                pass
    return {(a, b) for rec in recorded for a, b in zip(rec, here) if a != b}


MAX_IDENTITY_BYTES_PER_PAGE = 16   # a few saved copies of cpuid's output, no more


def _explained(recorded: bytes | None, found: bytes, pairs: set) -> int | None:
    """How many bytes differ if every difference is an APIC-id byte pair (and there are few
    of them), else None."""
    if recorded is None or not pairs or len(recorded) != len(found):
        return None
    n = 0
    for a, b in zip(recorded, found):
        if a != b:
            if (a, b) not in pairs or n == MAX_IDENTITY_BYTES_PER_PAGE:
                return None
            n += 1
    return n


def _compared_chunks(mem: TraceeMemory, region: dict, replayed: list[dict]):
    """(index of the first page in the region, its bytes or None for pages never touched,
    which read as zeros (capture.private_anonymous), the indexes of unreadable pages, the
    number of pages) for consecutive pieces of the region, at most CHUNK_PAGES pages each.
    Untouched pages are told apart only where the replayed process too maps the range
    private and anonymous (replayed: its /proc/PID/maps): a shared mapping's pages can hold
    data that its page table does not show."""
    start, npages = region["start"], (region["end"] - region["start"]) // PAGE
    if not (private_anonymous(region) and any(
            m["start"] <= start and region["end"] <= m["end"] and private_anonymous(m)
            for m in replayed)):
        for i0, data, unreadable in region_chunks(mem, start, region["end"]):
            yield i0, data, unreadable, len(data) // PAGE
        return
    for i0 in range(0, npages, CHUNK_PAGES):
        n = min(CHUNK_PAGES, npages - i0)
        for j0, m, untouched in untouched_page_runs(mem, start + i0 * PAGE, n):
            if untouched:
                yield i0 + j0, None, set(), m
            else:
                addr = start + (i0 + j0) * PAGE
                data, unreadable = read_region(mem, addr, addr + m * PAGE)
                yield i0 + j0, data, unreadable, m


def _covered(maps: list[dict]) -> list[tuple[int, int, str]]:
    """Address ranges with their r/w/x, adjacent ranges of equal permissions merged (replay's
    anonymous stand-ins for file mappings may merge where the recording's did not)."""
    out = []
    for r in maps:
        if r["path"] in SKIP_REGIONS:
            continue
        if out and out[-1][1] == r["start"] and out[-1][2] == r["perms"][:3]:
            out[-1] = (out[-1][0], r["end"], out[-1][2])
        else:
            out.append((r["start"], r["end"], r["perms"][:3]))
    return out


def compare(pid: int, ckpt: dict, trace, pages, notes: dict | None = None,
            whole: bool = False) -> list[dict]:
    """Differences between the stopped tracee and the checkpoint; [] when equal. notes (if
    given) receives "cpu_identity_bytes": bytes that differed only by the cores' APIC ids.
    whole: also read and check everything a restore of it would (a whole-trace replay, which
    restores no later checkpoint, then fails on damage where a verify's segment would)."""
    if whole:
        check_contents(trace, ckpt, pages)
    diffs = []
    pairs = identity_pairs(trace.manifest["host"])
    reg_diffs = register_diff(ckpt["regs"], getregs(pid))
    if reg_diffs:
        diffs.append({"what": "registers", "registers": reg_diffs})
    fpu = ffi.new("uint64_t *")
    lib.rrv_fpu_digest(pid, fpu)
    if fpu[0] != ckpt["fpu_digest"]:
        diffs.append({"what": "fpu-state", "expected": f"{ckpt['fpu_digest']:#018x}",
                      "found": f"{fpu[0]:#018x}"})
    mem = TraceeMemory(pid)
    try:
        with VerifierSite(pid, mem) as injector:
            # The signals the checkpoint names, besides those the process handles or ignores
            # (a default action set with flags: Injector.signal_state_and_brk).
            named = sum(1 << (a[0] - 1) for a in ckpt["signals"]["actions"])
            signals, brk = injector.task_state(named)
        if signals != ckpt["signals"]:
            diffs.append({"what": "signal-state", "expected": ckpt["signals"], "found": signals})
        if brk != ckpt["mm"]["brk"]:
            diffs.append({"what": "brk", "expected": ckpt["mm"]["brk"], "found": brk})
        found = task_attributes(pid)
        for key in ("rlimits", "personality"):
            want, have = ckpt[key], found[key]
            if key == "rlimits":    # replay never dumps core: RLIMIT_CORE is its own
                want, have = ([l for l in x if l[0] != "RLIMIT_CORE"] for x in (want, have))
            if want != have:
                diffs.append({"what": key, "expected": want, "found": have})
        replayed_maps = exec_image.read_maps(pid)
        expected, found = _covered(ckpt["regions"]), _covered(replayed_maps)
        if found != expected:
            diffs.append({"what": "address-space",
                          "expected": [f"{s:#x}-{e:#x} {p}" for s, e, p in expected],
                          "found": [f"{s:#x}-{e:#x} {p}" for s, e, p in found]})
        recorded = checkpoint_pagemap(trace, ckpt)
        mem_diffs = []
        tolerated = 0
        for r in ckpt["regions"]:
            bad = []
            for i0, data, unreadable, npages in _compared_chunks(mem, r, replayed_maps):
                first = r["first_page"] + i0
                if data is None and recorded.count(0, first * 16, (first + npages) * 16) == \
                        npages * 16:
                    continue            # untouched, and recorded as zero pages: all of them
                for j in range(npages):
                    d = recorded[(first + j) * 16:(first + j + 1) * 16]
                    if data is None:        # untouched: zeros, not read
                        if d == ZERO:
                            continue
                        page = ZERO_PAGE
                    else:
                        page = data[j * PAGE:(j + 1) * PAGE]
                        if (UNREADABLE if j in unreadable else page_digest(page)) == d:
                            continue
                    explained = None if j in unreadable else _explained(pages.page(d), page, pairs)
                    if explained is None:
                        bad.append(i0 + j)
                    else:
                        tolerated += explained
            if bad:
                mem_diffs.append({"region": f"{r['start']:#x}-{r['end']:#x}",
                                  "path": r["path"] or "[anon]", "perms": r["perms"],
                                  "pages_differing": len(bad),
                                  "first_difference": f"{r['start'] + bad[0] * 4096:#x}"})
        if mem_diffs:
            diffs.append({"what": "memory", "regions": mem_diffs[:MAX_REPORTED_REGIONS],
                          "regions_differing": len(mem_diffs)})
        if notes is not None:
            notes["cpu_identity_bytes"] = notes.get("cpu_identity_bytes", 0) + tolerated
    finally:
        mem.close()
    return diffs
