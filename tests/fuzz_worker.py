"""A long-lived process for tests/test_fuzz_trace.py: runs `rrverify` commands in-process (one
Python start-up for hundreds of mutants). Reads one JSON request a line on stdin, answers one
JSON line: {"rc", "stdout", "stderr"}; for {"reads": TRACE}, also the names of the trace files
a whole replay opens; for {"ship": TRACE, "segment": K}, what --ship makes of segment K."""
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


def _ship(trace: str, k: int) -> dict:
    """What --ship does for segment k, without Ray: pack it from the trace, lay it out as a
    worker does, verify it there."""
    import shutil
    from rrverify.checkpoints.pages import PageStoreReader
    from rrverify.cluster.ship import materialize, segment_bundle, shared_bundle
    from rrverify.errors import RRVerifyError
    from rrverify.replayer.segment import segment_bounds, verify_segment
    from rrverify.trace import Trace
    try:
        t = Trace(trace)
        shared, bounds = shared_bundle(t), segment_bounds(t)
        if not bounds:
            return {"rc": 2, "stdout": "", "stderr": "rrverify: no segment"}
        k %= len(bounds)
        bundle = segment_bundle(t, PageStoreReader(t), *bounds[k])
    except RRVerifyError as e:
        return {"rc": 2, "stdout": "", "stderr": f"rrverify: {e}"}
    except Exception as e:  # noqa: BLE001 -- the test fails on it
        return {"rc": 2, "stdout": "", "stderr": f"internal error: {e!r}"}
    root = materialize(shared, bundle)
    try:
        report = verify_segment(root, k, shown_path=trace)
    finally:
        shutil.rmtree(root)
    rc = {"verified": 0, "diverged": 1}.get(report["status"], 2)
    return {"rc": rc, "stdout": report["status"], "stderr": report.get("error", "")}


def main() -> None:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)     # whatever else writes to fd 1
    for line in sys.stdin:
        req = json.loads(line)
        if "reads" in req:
            answer = _reads(req["reads"])
        elif "ship" in req:
            answer = _ship(req["ship"], req["segment"])
        else:
            answer = _run(req["argv"])
        answers.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
