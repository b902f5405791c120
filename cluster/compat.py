"""Can this worker replay that trace? The CPU must show the tracee what the recording CPU
showed: CPUID cannot be trapped on these machines, so a program that looks at a feature bit
would take another path. Per-core fields (APIC ids) are not compared."""
from __future__ import annotations

from .. import host

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
