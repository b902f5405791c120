"""What a program can observe about the machine it runs on: recorded in every manifest;
cluster/compat.py refuses a worker whose CPU shows the tracee something else."""
from __future__ import annotations

import os
import platform

from ._native import ffi, lib

# Leaves whose subleaves matter (ECX input); the rest are read with subleaf 0.
_SUBLEAF_COUNTS = {0x4: 8, 0x7: 2, 0xb: 4, 0xd: 64, 0xf: 2, 0x10: 4, 0x12: 4, 0x14: 2,
                   0x17: 4, 0x18: 8, 0x1d: 2, 0x1e: 1, 0x1f: 6}


def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    out = ffi.new("uint32_t[4]")
    lib.rrv_cpuid(leaf, subleaf, out)
    return tuple(out)


def cpuid_leaves() -> dict[str, list[int]]:
    """Every basic and extended leaf, keyed "LEAF.SUBLEAF" in hex."""
    leaves = {}
    for base in (0, 0x80000000):
        top = cpuid(base)[0]
        if top < base or top > base + 0x100:
            continue
        for leaf in range(base, top + 1):
            for sub in range(_SUBLEAF_COUNTS.get(leaf, 1)):
                leaves[f"{leaf:#x}.{sub}"] = list(cpuid(leaf, sub))
    return leaves


def xsave_layout() -> dict:
    eax, ebx, ecx, edx = cpuid(0xd, 0)
    mask = eax | edx << 32
    comps = []
    for i in range(2, 64):
        if mask & (1 << i):
            size, offset, _, _ = cpuid(0xd, i)
            comps.append({"component": i, "offset": offset, "size": size})
    return {"xcr0_supported": mask, "max_size": ecx, "components": comps}


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def core_identities(cpus=None) -> list[str]:
    """The APIC ids (compare.py: cpu_identity) of each of these CPUs (None: every online CPU
    this process may be moved to, whatever its affinity now), in hex: a recorded process may
    run on any of them (a taskset moves it), and keeps what its cpuid said there."""
    from .checkpoints.compare import cpu_identity
    mine = os.sched_getaffinity(0)
    out = []
    try:
        for cpu in sorted(cpus) if cpus is not None else range(os.cpu_count() or 1):
            try:
                os.sched_setaffinity(0, {cpu})
            except OSError:         # outside this process's cpuset
                continue
            out.append(cpu_identity({"0x1.0": list(cpuid(1)), "0xb.0": list(cpuid(0xb, 0))}).hex())
    finally:
        os.sched_setaffinity(0, mine)
    return sorted(set(out))


def describe(cpus=None) -> dict:
    """cpus: the CPUs recorded processes may run on, whose APIC ids are recorded too (None:
    every CPU this process may be moved to)."""
    eax, ebx, ecx, edx = cpuid(0)
    vendor = b"".join(r.to_bytes(4, "little") for r in (ebx, edx, ecx)).decode("ascii", "replace")
    u = os.uname()
    return {"hostname": u.nodename, "kernel": u.release, "machine": u.machine,
            "cpu": {"vendor": vendor, "model_name": cpu_model_name(),
                    "signature": cpuid(1)[0]},
            "cpuid": cpuid_leaves(), "xsave": xsave_layout(),
            "core_identities": core_identities(cpus)}
