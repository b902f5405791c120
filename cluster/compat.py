"""Can this worker replay that trace? The CPU must show the tracee what the recording CPU
showed: CPUID cannot be trapped on these machines, so a program that looks at a feature bit
would take another path. Per-core fields (APIC ids) are not compared. And the worker must be
able to give the tracee the resource limits it was recorded with."""
from __future__ import annotations

import resource

from .. import host
from ..tracee import RLIMITS

# (leaf.subleaf, register index, mask) of what a program can observe and act on.
FULL = 0xffffffff
OBSERVABLE = [
    ("0x0.0", 0, FULL), ("0x0.0", 1, FULL), ("0x0.0", 2, FULL), ("0x0.0", 3, FULL),
    ("0x1.0", 0, FULL), ("0x1.0", 1, 0x00ffffff), ("0x1.0", 2, FULL), ("0x1.0", 3, FULL),
    ("0x7.0", 0, FULL), ("0x7.0", 1, FULL), ("0x7.0", 2, FULL), ("0x7.0", 3, FULL),
    ("0x7.1", 0, FULL), ("0x7.1", 1, FULL), ("0x7.1", 2, FULL), ("0x7.1", 3, FULL),
    ("0xd.0", 0, FULL), ("0xd.0", 2, FULL), ("0xd.0", 3, FULL), ("0xd.1", 0, FULL),
    ("0x80000001.0", 2, FULL), ("0x80000001.0", 3, FULL), ("0x80000008.0", 0, FULL),
]
REGS = "eax ebx ecx edx".split()


def incompatibilities(recorded_host: dict, here: dict | None = None) -> list[str]:
    """What differs between the recording CPU and this one, as lines; [] if compatible."""
    here = here or {"cpuid": host.cpuid_leaves(), "xsave": host.xsave_layout()}
    rec, now = recorded_host.get("cpuid", {}), here["cpuid"]
    out = []
    for leaf, reg, mask in OBSERVABLE:
        a = rec.get(leaf, [0, 0, 0, 0])[reg] & mask
        b = now.get(leaf, [0, 0, 0, 0])[reg] & mask
        if a != b:
            out.append(f"CPUID {leaf} {REGS[reg]}: recorded {a:#010x}, this CPU {b:#010x}")
    if recorded_host.get("xsave", {}).get("components") != here["xsave"]["components"]:
        out.append("XSAVE layout differs")
    return out


def rlimit_shortfalls(manifest: dict, here: str = "this worker") -> list[str]:
    """The recorded hard limits above this process's own, as lines; [] if none. Restore sets
    the recorded limits in the tracee: a hard limit above the worker's cannot be set without
    privilege, and would otherwise be set to something the recording did not see."""
    def value(v: int) -> float:
        return float("inf") if v < 0 or v >= 2**64 - 1 else v

    def show(v: float) -> str:
        return "unlimited" if v == float("inf") else str(int(v))
    out = []
    for name, _, recorded in manifest.get("rlimits", []):
        if name == "RLIMIT_CORE" or name not in RLIMITS:    # restore forces RLIMIT_CORE to 0
            continue
        allowed = resource.getrlimit(RLIMITS[name])[1]
        if value(recorded) > value(allowed):
            out.append(f"{name}: recorded hard limit {show(value(recorded))}, "
                       f"{here} allows {show(value(allowed))}")
    return out
