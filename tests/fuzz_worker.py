"""A long-lived process for tests/test_fuzz_trace.py: runs `rrverify` commands in-process (one
Python start-up for hundreds of mutants). Reads one JSON request a line on stdin, answers one
JSON line: {"rc", "stdout", "stderr"}; or, for {"reads": TRACE}, the names of the trace files a
whole replay opens."""
from __future__ import annotations

import json
import os
import sys
import tempfile


def _run(argv: list[str]) -> dict:
    from rrverify import cli
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            rc = cli.main(argv)
        except BaseException as e:  # noqa: BLE001 -- reported to the test, which fails on it
            rc = f"raised {type(e).__name__}: {e}"
        finally:
            sys.stdout, sys.stderr = saved
        out.seek(0)
        err.seek(0)
        return {"rc": rc, "stdout": out.read(), "stderr": err.read()}


def _reads(trace: str) -> dict:
    from rrverify import trace as T
    opened, real = set(), T.open_trace_file

    def spy(root, name, missing=None):
        opened.add(name)
        return real(root, name, missing)
    T.open_trace_file = spy
    try:
        result = _run(["replay", trace])
    finally:
        T.open_trace_file = real
    return dict(result, reads=sorted(opened))


def main() -> None:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)     # whatever else writes to fd 1
    for line in sys.stdin:
        req = json.loads(line)
        answer = _reads(req["reads"]) if "reads" in req else _run(req["argv"])
        answers.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
