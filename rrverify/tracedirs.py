"""Where traces go when the user does not say: $RRVERIFY_TRACE_DIR, else
~/.local/share/rrverify, as <program>-<n>, with a `latest-trace` link (rr's convention)."""
from __future__ import annotations

import os
import shutil

from .errors import TraceError, UsageError


def base_dir() -> str:
    return os.environ.get("RRVERIFY_TRACE_DIR") or os.path.join(
        os.path.expanduser("~"), ".local", "share", "rrverify")


def new_trace_dir(program: str) -> str:
    base = base_dir()
    os.makedirs(base, exist_ok=True)
    stem = os.path.basename(program) or "trace"
    n = 0
    while True:
        path = os.path.join(base, f"{stem}-{n}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            n += 1


def prepare(path: str) -> bool:
    """Check that `record -o PATH` can write there, before anything runs; True if this
    created the directory."""
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise UsageError(f"record: {path}: already exists; choose another trace directory")
    made = not os.path.exists(path)
    try:
        os.makedirs(path, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        raise UsageError(f"record: cannot write a trace at {path}: {e.strerror or e}") from None
    return made


def settle(path: str, *, made: bool, latest: bool) -> bool:
    """After a recording, whether it failed or not. One that got as far as a verifiable trace
    (its first checkpoint) is kept and, if `latest`, becomes latest-trace; a failed start
    leaves nothing behind (a directory that was there before stays, empty). Returns whether
    the recording got that far."""
    try:
        started = os.path.getsize(os.path.join(path, "checkpoints.jsonl")) > 0
    except OSError:
        started = False
    if not started:
        shutil.rmtree(path, ignore_errors=True)
        if not made:
            os.mkdir(path)
    elif latest:
        set_latest(path)
    return started


def set_latest(path: str) -> None:
    link = os.path.join(base_dir(), "latest-trace")
    tmp = link + ".tmp"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    os.symlink(os.path.abspath(path), tmp)
    os.replace(tmp, link)


def resolve(trace: str | None) -> str:
    if trace:
        return trace
    link = os.path.join(base_dir(), "latest-trace")
    if not os.path.lexists(link):
        raise TraceError(f"no trace given and no {link}: record one first "
                         f"(rrverify record -- CMD)")
    if not os.path.exists(link):
        raise TraceError(f"no trace given, and {link} points to {os.readlink(link)}, which no "
                         f"longer exists: give a trace, or record one")
    return link
