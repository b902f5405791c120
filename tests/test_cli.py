"""The command line: default trace locations, info, dump, exit statuses."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from conftest import record, run_cli
from test_interrupted import _assert_incomplete_but_verifies, _start_long_recording, _tracee_of


def test_default_trace_dir_and_latest_link(programs, tmp_path):
    env = {"RRVERIFY_TRACE_DIR": str(tmp_path)}
    first = run_cli("record", "--", programs["hello"], env=env)
    assert first.returncode == 0 and first.stdout == b"hello, world\n"
    second = run_cli("record", programs["exit_code"], env=env)
    assert second.returncode == 3
    assert (tmp_path / "hello-0" / "manifest.json").exists()
    assert (tmp_path / "exit_code-0" / "manifest.json").exists()
    assert os.path.realpath(tmp_path / "latest-trace") == str(tmp_path / "exit_code-0")
    rep = run_cli("replay", env=env)
    assert rep.returncode == 0 and rep.stdout.startswith(b"verified: 1 process")
    info = run_cli("info", env=env)
    assert b"exit_code" in info.stdout
    assert run_cli("dump", env=env).returncode == 0
    assert run_cli("replay", tmp_path / "hello-0").returncode == 0
    # `rrverify TRACE` verifies too.
    assert run_cli(tmp_path / "hello-0").returncode == 0


def test_no_trace_at_all(tmp_path):
    proc = run_cli("replay", env={"RRVERIFY_TRACE_DIR": str(tmp_path)})
    assert proc.returncode == 2 and b"record one first" in proc.stderr


def test_info_describes_the_trace(recorded_hello):
    out = run_cli("info", recorded_hello).stdout.decode()
    for field in ("command:", "program:", "host:", "cpu:", "events:", "size:", "status:"):
        assert field in out
    assert "complete: exited with status 0" in out
    assert "CPUID leaves" in out


def test_dump_one_line_per_event(recorded_hello):
    lines = run_cli("dump", recorded_hello).stdout.decode().splitlines()
    info = run_cli("info", recorded_hello, "--json").stdout.decode()
    import json
    events = [l for l in lines if not l.lstrip().startswith("buffered: ")]
    assert len(events) == json.loads(info)["stats"]["events"]     # and under a flush, one
    assert all(re.match(r" *\d+ \[\d+\] ", l) for l in events)   # line per buffered syscall
    assert "exec: entry" in lines[0]
    assert any("write(fd=1" in l and "= 13" in l for l in lines)
    assert any("newfstatat(" in l for l in lines)
    assert lines[-1].endswith("exit: status 0")


def test_dump_into_a_closed_pipe(recorded_hello):
    proc = subprocess.run(f"{sys.executable} -m rrverify dump {recorded_hello} | head -2",
                          shell=True, capture_output=True)
    assert proc.returncode == 0
    assert len(proc.stdout.splitlines()) == 2
    assert b"Traceback" not in proc.stderr


def test_existing_output_directory_is_refused(recorded_hello):
    proc = record(recorded_hello, "/bin/true")
    assert proc.returncode == 2 and b"already exists" in proc.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_the_recorder_ends_the_trace_cleanly(signum, programs, tmp_path):
    """The tracee is killed, the trace ends incomplete naming the signal and verifies up to
    there, and record exits with 128 + signal after one line."""
    trace = tmp_path / "t"
    proc = _start_long_recording(programs, trace)
    tracee = _tracee_of(proc.pid)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, err.decode()
    lines = err.decode().splitlines()
    assert lines == [f"rrverify: record: the recorder received {signum.name}: "
                     f"trace incomplete at {trace}"]
    assert not os.path.exists(f"/proc/{tracee}") or \
        open(f"/proc/{tracee}/stat").read().split()[2] == "Z"
    m = json.loads((trace / "manifest.json").read_text())
    assert m["complete"] is False and m["end"]["reason"] == f"the recorder received {signum.name}"
    _assert_incomplete_but_verifies(trace)


def test_verify_stdout_is_the_report_only(recorded_hello):
    proc = run_cli(recorded_hello, "--workers", 1)
    assert proc.returncode == 0, proc.stderr.decode()
    assert re.fullmatch(rb"verified: (\d+)/\1 segments of 1 process, \d+ events; .* on 1 workers\n", proc.stdout)


def test_demo_records_a_process_tree_and_verifies_it(tmp_path):
    """README's first command: the bundled workload (a Python program that runs a shell
    pipeline) recorded and verified on a local Ray, every process and the checks across them."""
    proc = run_cli("demo", "--workers", "2", env={"RRVERIFY_TRACE_DIR": str(tmp_path)})
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    assert "all round trips True, most common first hex digit" in out
    m = re.search(r"verified: (\d+)/\1 segments of (\d+) processes", out)
    assert m and int(m.group(2)) >= 5, out      # python, sh, sort, uniq, sort, head
    info = run_cli("info", tmp_path / "demo-0").stdout.decode()
    assert "/usr/bin/sort" in info and "processes:" in info
