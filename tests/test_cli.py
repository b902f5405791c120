"""The command line: default trace locations, info, dump, exit statuses."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import record, run_cli


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
    assert len(lines) == json.loads(info)["stats"]["events"]
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
