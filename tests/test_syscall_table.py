"""The syscall table is the one place a syscall is declared: docs/syscalls.md is generated from
it and must say what the code does."""
from __future__ import annotations

import os

from rrverify.recorder import gen_syscalls, syscalls

DOCS = os.path.join(os.path.dirname(__file__), "..", "docs", "syscalls.md")


def test_docs_syscalls_md_is_generated_from_the_table():
    with open(DOCS) as f:
        assert f.read() == gen_syscalls.markdown(), \
            "docs/syscalls.md is stale: python -m rrverify.recorder.gen_syscalls --docs > docs/syscalls.md"


def test_every_handling_and_ioctl_is_declared_once():
    assert set(s.handling for s in syscalls.TABLE.values()) <= set(syscalls.HANDLINGS)
    assert all(size >= 0 for _, size in syscalls.LEGACY_IOCTLS.values())
    # A legacy ioctl command is one whose number carries no direction or size.
    assert all(cmd >> 16 == 0 for cmd in syscalls.LEGACY_IOCTLS)
