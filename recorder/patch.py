"""Patching a syscall site of a recorded process into a jump to a stub that calls the preload's
hook (preload/syscallbuf.c), when the recorder meets a bufferable syscall there (rr patches the
same way: lazily, at a site's first syscall). With that site, the other sites of the same
mapping that the analysis cache has plans for are patched at once (known_plans): every process
of a build meets libc's sites, and would otherwise stop at each.

Which sites are safe to patch, and what the jump displaces, patch_sites.py decides with
capstone from the library's file; this module checks that the process's memory still holds
those bytes, lays out the stubs (rrv.h: RRV_STUB_*) and the jumps, and hands them to the
native recorder, which writes them and records them as a PATCH event.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from rrverify._native import lib
from rrverify.exec_image import region_at
from rrverify.preload import LIBRARY

from .patch_plan import PLANS, PatchPlan, plan_of

REL32 = 2**31
JUMP_LENGTH = 5
# The vDSO's functions are rrverify's own stubs (exec_image.patch_vdso): `mov $nr, %eax;
# syscall; ret; int3; int3`. Its site displaces the `ret` and the two int3.
VDSO_TAIL = b"\x0f\x05\xc3\xcc\xcc"


@dataclass(frozen=True)
class Patch:
    jump: bytes       # written over the site
    stub: bytes       # written at the stub address


def stub_code(stub: int, site: int, plan: PatchPlan, hook_entry: int, returns: bool) -> bytes:
    """The stub of one site (rrv.h's RRV_STUB_* offsets). returns: the displaced instructions
    end in a `ret` (the vDSO's), so no jump back follows them."""
    code = bytearray()
    code += b"\x48\x8d\x64\x24\x80"                         # lea -0x80(%rsp), %rsp
    code += b"\xe8" + rel32(stub + 10, hook_entry)          # call hook_entry
    assert len(code) == lib.RRV_STUB_CALL_RETURN
    code += b"\x48\x8d\xa4\x24\x80\x00\x00\x00"             # lea 0x80(%rsp), %rsp
    code += b"\xeb" + bytes([lib.RRV_STUB_DISPLACED - 20])  # jmp to the displaced code
    assert len(code) == lib.RRV_STUB_TRACED
    code += b"\x48\x8d\xa4\x24\x80\x00\x00\x00"             # lea 0x80(%rsp), %rsp
    assert len(code) == lib.RRV_STUB_SYSCALL
    code += b"\x0f\x05"                                     # syscall (traced)
    code += b"\xeb" + bytes([lib.RRV_STUB_DISPLACED - 32])  # jmp to the displaced code
    assert len(code) == lib.RRV_STUB_SITE
    code += struct.pack("<Q", site)
    code += plan.displaced
    if not returns:
        end = stub + len(code) + JUMP_LENGTH
        code += b"\xe9" + rel32(end, site + plan.length)    # jmp back after the site
    return bytes(code)


def rel32(after: int, target: int) -> bytes:
    delta = target - after
    if not -REL32 <= delta < REL32:
        raise ValueError("out of reach")
    return struct.pack("<i", delta)


def plan_for(pid: int, site: int, region: dict, mem, digest_of=None) -> PatchPlan | None:
    """What patching the site would displace, checked against the process's memory; None if
    it is not to be patched. digest_of(region): the SHA-256 of the region's file as it is at
    its path, or None (patch_plan.plan_of)."""
    if region["path"] == "[vdso]":
        if site + len(VDSO_TAIL) > region["end"] or not _holds(mem, site, VDSO_TAIL):
            return None
        return PatchPlan(length=JUMP_LENGTH, displaced=VDSO_TAIL[2:], text="ret")
    path = region["path"]
    if not path.startswith("/") or "x" not in region["perms"] or path == LIBRARY:
        return None
    digest = digest_of(region) if digest_of is not None else None
    plan = plan_of(path, region["offset"] + site - region["start"], digest,
                   still_same=lambda: digest_of(region) == digest)
    if not isinstance(plan, PatchPlan) or not _holds(mem, site, b"\x0f\x05" + plan.displaced):
        return None       # (not the file's bytes: the process changed its code since)
    return plan


def decide(pid: int, state, digest_of=None) -> list[tuple[int, int, Patch]]:
    """The patches to make at the site state.patch_site (process pid, stopped at its syscall),
    as (site, stub address, patch): the site's own first, then those of the other sites of its
    mapping that the analysis cache has plans for and the process's memory still holds
    unpatched, in address order, while the stubs take at most half the stub memory. [] if the
    site is to stay as it is. No other site is patched in a process a signal was delivered to
    since its exec: a signal frame on its stack may hold a saved ip inside one.
    digest_of(region): the SHA-256 (hex) of the content of the region's file as it is at its
    path, or None."""
    site = state.patch_site
    region = region_at(pid, site)
    if region is None:
        return []
    stub, end = state.stubs + state.stubs_used, state.stubs + state.stubs_size
    try:
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
            plan = plan_for(pid, site, region, mem, digest_of)
            own = None if plan is None else _lay_out(site, stub, plan, state.hook_entry)
            if own is None or stub + len(own.stub) > end:
                return []
            patches = [(site, stub, own)]
            if not state.signal_delivered and digest_of is not None and \
                    region["path"] != "[vdso]":
                _add_known_sites(patches, mem, region, digest_of(region), state,
                                 state.stubs + state.stubs_size // 2)
    except OSError:
        return []
    return patches


def _lay_out(site: int, stub: int, plan: PatchPlan, hook_entry: int) -> Patch | None:
    """The stub at `stub` and the jump of a site, or None if a rel32 cannot reach. Displaced
    bytes that begin with a `ret` end the stub (the vDSO's stubs, and `syscall; ret` sites
    followed by padding, patch_sites.py: _ret_tail): no jump back follows them."""
    try:
        code = stub_code(stub, site, plan, hook_entry, returns=plan.displaced[:1] == b"\xc3")
        jump = b"\xe9" + rel32(site + JUMP_LENGTH, stub)
    except ValueError:
        return None
    return Patch(jump + b"\xcc" * (plan.length - JUMP_LENGTH), code)


def _add_known_sites(patches: list, mem, region: dict, digest: str | None, state,
                     budget_end: int) -> None:
    """Append to patches the other sites of region that the cache knows (known_plans), each
    stub after the last, until one would end past budget_end or cannot be laid out. A
    failure to read the process's memory ends the list where it is."""
    if digest is None:
        return
    site, stub, last = patches[-1]
    stub += (len(last.stub) + 15) & ~15
    try:
        for at, plan in known_plans(digest, region, exclude=site):
            if not _holds(mem, at, b"\x0f\x05" + plan.displaced):
                continue
            patch = _lay_out(at, stub, plan, state.hook_entry)
            if patch is None or stub + len(patch.stub) > budget_end:
                return
            patches.append((at, stub, patch))
            stub += (len(patch.stub) + 15) & ~15
    except OSError:
        return


def _holds(mem, addr: int, expected: bytes) -> bool:
    mem.seek(addr)
    return mem.read(len(expected)) == expected


def known_plans(digest: str, region: dict, exclude: int) -> list[tuple[int, PatchPlan]]:
    """(address, plan) of every site of the region's file, within the region, that the
    analysis cache has a plan for, but `exclude`."""
    out = []
    for key, entry in PLANS.entries(digest).items():
        at = region["start"] + int(key) - region["offset"]
        if entry[0] != "plan" or at == exclude or not region["start"] <= at < region["end"]:
            continue
        displaced = bytes.fromhex(entry[1])
        if at + 2 + len(displaced) <= region["end"]:
            out.append((at, PatchPlan(2 + len(displaced), displaced, entry[2])))
    return sorted(out, key=lambda p: p[0])
