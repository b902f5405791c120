"""Where traces go when the user does not say: $RRVERIFY_TRACE_DIR, else
~/.local/share/rrverify, as <program>-<n>, with a `latest-trace` link (rr's convention)."""
from __future__ import annotations

import os

from .errors import TraceError


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
    return link
