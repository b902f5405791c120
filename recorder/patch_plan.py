"""What patching a syscall site displaces (PatchPlan), or why the site stays (Refusal), and where
a plan comes from: the analysis cache, by the SHA-256 of the library's content
(rrverify/analysis_cache.py), else recorder/patch_sites.py, which decodes the file with
capstone and pyelftools, imported only then."""
from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass

from rrverify.analysis_cache import ContentCache

MAX_DISPLACED = 32


@dataclass(frozen=True)
class PatchPlan:
    length: int          # bytes replaced at the site: 2 (syscall) + len(displaced); >= 5
    displaced: bytes     # the whole instructions after the syscall that the jump overwrites
    text: str            # their disassembly, "; "-joined (for dump/debug)


@dataclass(frozen=True)
class Refusal:
    reason: str          # one line
    lasting: bool = True  # a fact of the file's content (False: it could not be read)


def _valid(key: str, value) -> bool:
    """A cache entry: file offset -> ["plan", displaced hex, text] or ["refused", reason]."""
    if not key.isdigit() or not isinstance(value, list) or not value:
        return False
    if value[0] == "refused":
        return len(value) == 2 and isinstance(value[1], str)
    if value[0] != "plan" or len(value) != 3 or not all(isinstance(v, str) for v in value[1:]):
        return False
    try:
        displaced = bytes.fromhex(value[1])
    except ValueError:
        return False
    return 3 <= len(displaced) <= MAX_DISPLACED


def _rules_version() -> str:
    """What the plans depend on besides the file: the rules (this module and patch_sites.py)
    and the decoder (capstone's Python module, which names its version; found, not imported).
    Another version of either keeps its own plans."""
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.find_spec("capstone")
    h = hashlib.sha256()
    for path in (os.path.join(here, "patch_plan.py"), os.path.join(here, "patch_sites.py"),
                 spec.origin if spec is not None and spec.origin else None):
        if path is not None:
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()[:16]


PLANS = ContentCache("patch-plans", _rules_version(), _valid)


def plan_of(path: str, file_offset: int, digest: str | None,
            still_same=None) -> PatchPlan | Refusal:
    """The plan of the `syscall` at file_offset of the ELF file at path. digest: the SHA-256
    (hex) of the content at path, known to be the file's now (None: not cached);
    still_same(): whether it still is, once the plan is made from the file (a file replaced
    meanwhile: the plan is not kept)."""
    if digest is not None:
        known = PLANS.entries(digest).get(str(file_offset))
        if known is not None:
            if known[0] == "refused":
                return Refusal(known[1])
            displaced = bytes.fromhex(known[1])
            return PatchPlan(2 + len(displaced), displaced, known[2])
    from .patch_sites import plan_site      # capstone, pyelftools: for a site never met
    plan = plan_site(path, file_offset)
    if digest is not None and (still_same is None or still_same()):
        if isinstance(plan, PatchPlan):
            PLANS.add(digest, str(file_offset), ["plan", plan.displaced.hex(), plan.text])
        elif plan.lasting:
            PLANS.add(digest, str(file_offset), ["refused", plan.reason])
    return plan
