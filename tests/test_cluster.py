"""Parallel verification on Ray: reports, failures isolated to the segments they touch, lost
workers retried, shipping, CPU compatibility, exit codes."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from rrverify.checkpoints.pages import RECORD, INDEX_MAGIC, FROM_CHUNK, ZERO
from rrverify.trace import Trace, blob_digest
from conftest import assert_one_line_error, run_cli
from test_bad_input import nofile_below_recorded
from traceedit import rehash
import zstandard


def verify(trace, tmp_path, *args, env=None):
    proc = run_cli(trace, "--workers", 2, "--json", tmp_path / "r.json",
                   "--junit", tmp_path / "r.xml", *args, env=env)
    report = json.loads((tmp_path / "r.json").read_text()) if (tmp_path / "r.json").exists() else None
    return proc, report


@pytest.fixture
def trace_copy(longrun, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(longrun, copy)
    return copy


def statuses(report) -> dict[int, str]:
    return {s["segment"]: s["status"] for s in report["segments"]}


def test_all_segments_verify_with_two_workers(longrun, tmp_path):
    proc, report = verify(longrun, tmp_path)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    n = len(Trace(str(longrun)).checkpoints)
    assert n >= 16
    # JSON structure
    assert report["status"] == "verified"
    assert report["totals"]["segments"] == n == report["totals"]["verified"]
    assert report["totals"]["events"] == Trace(str(longrun)).event_count
    for key in ("wall_seconds", "segment_seconds", "speedup", "startup_seconds"):
        assert isinstance(report["totals"][key], (int, float))
    for s in report["segments"]:
        assert set(s) >= {"segment", "status", "first_event", "end_event", "events", "seconds",
                          "host", "cpu"}
        assert s["status"] == "verified"
    assert [s["segment"] for s in report["segments"]] == list(range(n))
    assert {s["cpu"] for s in report["segments"]} == set(os.sched_getaffinity(0)) or \
        len(os.sched_getaffinity(0)) < 2
    # JUnit structure
    root = ET.parse(tmp_path / "r.xml").getroot()
    assert root.tag == "testsuites" and root.get("tests") == str(n)
    suite = root.find("testsuite")
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    assert len(suite.findall("testcase")) == n
    assert b"verified: %d/%d segments" % (n, n) in proc.stdout


def _pagemap_of(trace, k):
    return Trace(str(trace)).checkpoint(k)


def test_altered_checkpoint_page_fails_exactly_its_segments(trace_copy, tmp_path):
    t = Trace(str(trace_copy))
    k = len(t.checkpoints) // 2
    ck = t.checkpoint(k)
    region = next(r for r in ck["regions"] if r["perms"].startswith("r-x") and r["path"])
    pagemap = bytearray(t.blob(ck["pagemap_blob"]))
    i = region["first_page"]
    assert pagemap[i * 16:(i + 1) * 16] != ZERO
    pagemap[i * 16:(i + 1) * 16] = ZERO              # the checkpoint now says: zeros there
    digest = blob_digest(bytes(pagemap))
    d = trace_copy / "blobs" / digest.hex()[:2]
    d.mkdir(exist_ok=True)
    (d / f"{digest.hex()}.zst").write_bytes(zstandard.ZstdCompressor().compress(bytes(pagemap)))
    path = trace_copy / "checkpoints" / f"{k:06d}.json"
    c = json.loads(path.read_text())
    c["pagemap"] = digest.hex()
    path.write_text(json.dumps(c))
    rehash(trace_copy)
    proc, report = verify(trace_copy, tmp_path)
    assert proc.returncode == 1
    st = statuses(report)
    assert st[k - 1] == "diverged"
    assert st[k] in ("diverged", "trace-error")
    assert all(s == "verified" for seg, s in st.items() if seg not in (k - 1, k))
    before = report["segments"][k - 1]["divergence"]
    assert before["check"] == "checkpoint"
    mem = next(d for d in before["differences"] if d["what"] == "memory")
    assert mem["regions"][0]["path"] == region["path"]
    assert mem["regions"][0]["region"] == f"{region['start']:#x}-{region['end']:#x}"
    assert f"--segment {k - 1}" in before["reproduce"]
    assert region["path"] in proc.stdout.decode()


def _chunk_users(trace, chunk: bytes) -> set[int]:
    t = Trace(str(trace))
    data = (trace / "pages.idx").read_bytes()[len(INDEX_MAGIC):]
    pages = {d for d, kind, blob, _ in (RECORD.unpack_from(data, o)
                                         for o in range(0, len(data), RECORD.size))
             if kind == FROM_CHUNK and blob == chunk}
    users = set()
    for k in range(len(t.checkpoints)):
        pm = t.blob(t.checkpoint(k)["pagemap_blob"])
        if pages & {pm[i:i + 16] for i in range(0, len(pm), 16)}:
            users.add(k)
    return users


def _last_chunk(trace) -> bytes:
    data = (trace / "pages.idx").read_bytes()[len(INDEX_MAGIC):]
    recs = [RECORD.unpack_from(data, o) for o in range(0, len(data), RECORD.size)]
    return [blob for _, kind, blob, _ in recs if kind == FROM_CHUNK][-1]


@pytest.mark.parametrize("damage", ["corrupted", "missing"])
def test_damaged_blob_is_a_trace_error_for_its_segments_only(damage, trace_copy, tmp_path):
    chunk = _last_chunk(trace_copy)
    users = _chunk_users(trace_copy, chunk)
    assert users and len(users) < len(Trace(str(trace_copy)).checkpoints)
    path = trace_copy / "blobs" / chunk.hex()[:2] / f"{chunk.hex()}.zst"
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(zstandard.ZstdCompressor().compress(b"x" * 4096))
    proc, report = verify(trace_copy, tmp_path)
    assert proc.returncode == 1
    # Segment k restores C_k; segment k-1 compares its end with C_k by page digests, and reads
    # C_k's pages only where memory differs (a whole-trace replay reads them all).
    readers = users
    for s in report["segments"]:
        if s["segment"] in readers:
            assert s["status"] == "trace-error", s
            assert chunk.hex() in s["error"] and damage in s["error"]
        else:
            assert s["status"] == "verified", s


def test_lost_worker_is_retried_and_the_report_is_complete(longrun, tmp_path):
    marker = tmp_path / "killed-once"
    proc, report = verify(longrun, tmp_path, env={"RRVERIFY_TEST_KILL_WORKER": f"2:{marker}"})
    assert marker.exists()                      # a worker really died on segment 2
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert report["totals"]["verified"] == report["totals"]["segments"]


def test_ship_sends_what_each_segment_needs(longrun, tmp_path):
    proc, report = verify(longrun, tmp_path, "--ship")
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert report["ship"] is True and report["status"] == "verified"


def test_fail_fast_stops_early(trace_copy, tmp_path):
    n = len(Trace(str(trace_copy)).checkpoints)
    data = (trace_copy / "pages.idx").read_bytes()[len(INDEX_MAGIC):]
    chunks = list(dict.fromkeys(blob for _, kind, blob, _ in (
        RECORD.unpack_from(data, o) for o in range(0, len(data), RECORD.size)) if kind == FROM_CHUNK))
    chunk = next(c for c in chunks if 0 < min(_chunk_users(trace_copy, c) or {n}) <= n - 4)
    (trace_copy / "blobs" / chunk.hex()[:2] / f"{chunk.hex()}.zst").unlink()
    proc = run_cli(trace_copy, "--workers", 1, "--fail-fast", "--json", tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text())
    assert proc.returncode == 1
    assert report["totals"]["skipped"] > 0
    assert report["totals"]["skipped"] + report["totals"]["verified"] + \
        report["totals"]["trace-error"] == report["totals"]["segments"]


def test_incompatible_cpu_is_refused_per_segment(trace_copy, tmp_path):
    m = json.loads((trace_copy / "manifest.json").read_text())
    m["host"]["cpuid"]["0x7.0"][1] ^= 1 << 5           # the recording CPU "had" another feature
    (trace_copy / "manifest.json").write_text(json.dumps(m))
    proc, report = verify(trace_copy, tmp_path)
    assert proc.returncode == 1
    assert {s["status"] for s in report["segments"]} == {"incompatible-worker"}
    assert "CPUID 0x7.0 ebx" in report["segments"][0]["error"]


def test_unusable_trace_exits_2(tmp_path):
    assert_one_line_error(run_cli(tmp_path, "--workers", 2), 2, "not an rrverify trace")
    assert_one_line_error(run_cli("verify", tmp_path / "nope"), 2, "no such trace directory")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unused_port() -> int:
    """A free port below the ephemeral range (32768 and up here), where no component of the
    Ray we start binds one of its own: a port _free_port gives may be bound by Ray's GCS or
    raylet before its client server binds it, and that server then exits, and the head."""
    import random
    while True:
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


@pytest.fixture(scope="module")
def ray_head():
    """A Ray cluster started apart (`ray start --head`, with a Ray client server): (GCS port,
    client port). Stopped by killing its own process group, not every Ray on the machine."""
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    for attempt in range(3):
        port, client_port = _unused_port(), _unused_port()
        head = subprocess.Popen([ray_cli, "start", "--head", "--block", "--num-cpus", "2",
                                 "--port", str(port), "--ray-client-server-port",
                                 str(client_port), "--include-dashboard=false",
                                 "--disable-usage-stats"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.monotonic() + 60
        while head.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", client_port), 1).close()
                time.sleep(2)       # (a head whose client server could not start ends now)
                break
            except OSError:
                time.sleep(0.2)
        if head.poll() is None:
            break
        head.wait()
    assert head.poll() is None, "no Ray head would start"
    try:
        yield port, client_port
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_joins_an_existing_cluster_with_address(scheme, ray_head, longrun, tmp_path):
    """By its GCS address, and through the Ray client (ray://, which needs ray[client]);
    with --ship. stdout carries the report only."""
    address = f"{scheme}127.0.0.1:{ray_head[1] if scheme else ray_head[0]}"
    proc, report = verify(longrun, tmp_path, "--address", address, "--ship")
    for _ in range(2):
        if b"Starting Ray client server failed" not in proc.stderr:
            break
        # Ray's client proxy starts a server per client on the first free port from 23000,
        # machine-wide: a Ray client of a concurrent test run can take it first, and under
        # load the server may not start within Ray's own timeout. Again, a little later.
        time.sleep(2)
        proc, report = verify(longrun, tmp_path, "--address", address, "--ship")
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert report["address"] == address and report["status"] == "verified"
    assert proc.stdout.decode().splitlines() == [l for l in proc.stdout.decode().splitlines()
                                                 if l.startswith("verified: ")]


def test_more_workers_than_the_cluster_has_cpus(ray_head, longrun, tmp_path):
    """The head has 2 CPUs: a third worker never starts, and verify goes on without it."""
    proc, report = verify(longrun, tmp_path, "--address", f"127.0.0.1:{ray_head[0]}",
                          "--workers", 3, "--segment-timeout", 10)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert report["status"] == "verified" and report["workers"] == 3
    assert report["workers_started"] in (1, 2)
    assert b"workers started within 10 s (--segment-timeout); going on with" in proc.stderr


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_unreachable_address_fails_fast_with_one_line(scheme, longrun):
    address = f"{scheme}127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    proc = run_cli(longrun, "--address", address)
    assert time.monotonic() - t0 < 15
    assert_one_line_error(proc, 2, f"--address {address}: cannot reach", "Connection refused")


def test_an_address_where_no_ray_answers_fails_with_one_line(longrun):
    """Something accepts connections there, but it is not Ray."""
    import threading
    server = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=lambda: [c.close() for c, _ in iter(server.accept, None)],
                     daemon=True).start()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    t0 = time.monotonic()
    proc = run_cli(longrun, "--address", address)
    assert time.monotonic() - t0 < 15
    assert_one_line_error(proc, 2, f"--address {address}: {address} answers, but not as a Ray "
                                   f"cluster")


def test_a_stuck_segment_times_out_and_the_run_finishes(longrun, tmp_path):
    marker = tmp_path / "hung-once"
    proc, report = verify(longrun, tmp_path, "--segment-timeout", 5,
                          env={"RRVERIFY_TEST_HANG_WORKER": f"2:{marker}"})
    assert marker.exists()                      # a worker really hung on segment 2
    assert proc.returncode == 1
    st = statuses(report)
    assert st.pop(2) == "timeout" and set(st.values()) == {"verified"}
    assert report["totals"]["timeout"] == 1
    assert "no result after 5 s" in report["segments"][2]["error"]
    error = ET.parse(tmp_path / "r.xml").getroot().find("testsuite/testcase[3]/error")
    assert error is not None and error.get("type") == "timeout"
    assert b"segment 2 (events" in proc.stdout and b"1 timeout" in proc.stdout


def test_lower_hard_rlimits_make_the_worker_incompatible(recorded_hello, tmp_path):
    recorded, lower, limit = nofile_below_recorded(recorded_hello)
    proc = subprocess.run([sys.executable, "-m", "rrverify", "verify", str(recorded_hello),
                           "--workers", "1", "--json", str(tmp_path / "r.json")],
                          capture_output=True, timeout=300, preexec_fn=limit)
    assert proc.returncode == 1, proc.stderr.decode()
    report = json.loads((tmp_path / "r.json").read_text())
    assert {s["status"] for s in report["segments"]} == {"incompatible-worker"}
    assert report["segments"][0]["error"] == \
        f"RLIMIT_NOFILE: recorded hard limit {recorded}, this worker allows {lower}"


def test_shipped_reports_name_the_drivers_trace(trace_copy, tmp_path):
    chunk = _last_chunk(trace_copy)
    (trace_copy / "blobs" / chunk.hex()[:2] / f"{chunk.hex()}.zst").unlink()
    proc, report = verify(trace_copy, tmp_path, "--ship")
    assert proc.returncode == 1
    errors = [s["error"] for s in report["segments"] if s["status"] == "trace-error"]
    assert errors and all(str(trace_copy) in e and "rrverify-shipped" not in e for e in errors)
