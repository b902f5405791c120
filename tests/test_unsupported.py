"""What recording cannot handle yet ends it with one line naming the problem, exit 2, and a
trace marked incomplete that still verifies up to where it ends."""
from __future__ import annotations

import json
import os

import pytest

from conftest import assert_one_line_error, record, replay, run_cli

CASES = {
    "threads": ("syscall 435 (clone3)", "clone3 of a thread (CLONE_THREAD): threads are not "
                "supported yet"),
    "unknown_syscall": ("syscall 300 (fanotify_init)", "not in rrverify's syscall table"),
    "async_signal": ("signal 14", "got signal 14 (Alarm clock), which it handles, while "
                     "running user code", "needs execution points"),
    "int80_unlink": ("32-bit i386 (int $0x80) syscall 10 (unlink)", "it was not run"),
    "x32_syscall": ("x32 syscall 39 (getpid)", "only x86-64 syscalls can be recorded"),
    "unknown_ioctl": ("syscall 16 (ioctl)", "command 0x54ff is not _IOC-encoded"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_unsupported_ends_recording_clearly(name, programs, tmp_path):
    trace = tmp_path / "t"
    proc = record(trace, programs[name])
    line = assert_one_line_error(proc, 2, "record: unsupported", *CASES[name])
    assert str(trace) in line
    with open(trace / "manifest.json") as f:
        m = json.load(f)
    assert m["complete"] is False
    assert CASES[name][0].split(" (")[0] in m["end"]["reason"]
    info = run_cli("info", trace)
    assert "INCOMPLETE" in info.stdout.decode()
    rep = replay(trace)
    assert rep.returncode == 0, rep.stdout.decode() + rep.stderr.decode()
    assert "incomplete trace: verified up to its end" in rep.stdout.decode()


def test_missing_program_is_a_usage_error(tmp_path):
    proc = record(tmp_path / "t", "no-such-program-rrverify")
    assert_one_line_error(proc, 2, "command not found: no-such-program-rrverify")
