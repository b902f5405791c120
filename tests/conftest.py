"""Shared fixtures: test programs compiled with the system gcc, and running the real CLI."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAM_SOURCES = sorted(glob.glob(os.path.join(HERE, "programs", "*.c")))

# The analysis cache (rrverify/analysis_cache.py) of the suite's recordings, in-process and in
# the CLI's processes alike: the suite's own, never the user's ~/.cache.
import atexit  # noqa: E402
import tempfile  # noqa: E402
os.environ["RRVERIFY_CACHE_DIR"] = tempfile.mkdtemp(prefix="rrverify-test-cache-")
atexit.register(shutil.rmtree, os.environ["RRVERIFY_CACHE_DIR"], ignore_errors=True)


TEST_RUN_CPUS = os.sched_getaffinity(0)


@pytest.fixture(autouse=True)
def _cpus_back():
    """Every test starts on the CPUs the run started with: a checkpoint restored in-process
    pins its caller to the restored process's CPU (it is its tracer), and a later recording
    started from a pinned thread would have one CPU, one tracer thread."""
    yield
    os.sched_setaffinity(0, TEST_RUN_CPUS)


@pytest.fixture(scope="session")
def programs(tmp_path_factory) -> dict[str, str]:
    """name -> path of every tests/programs/*.c, compiled once per session."""
    out = tmp_path_factory.mktemp("programs")
    built = {}
    for src in PROGRAM_SOURCES:
        name = os.path.splitext(os.path.basename(src))[0]
        exe = str(out / name)
        # -z now: lazy binding resolves symbols through ld.so's _dl_runtime_resolve_xsavec,
        # whose XSAVEC writes CPU-tracked state (XINUSE) to the stack: a known limit
        # (docs/checks.md §11) that would make checkpoint tests flaky.
        subprocess.run(["gcc", "-O1", "-g", "-Wl,-z,now", "-o", exe, src], check=True)
        built[name] = exe
    return built


def children_of(pid: int) -> list[int]:
    """The children of process pid, of every thread of it (a recorder's tracer threads each
    start or adopt their own tracees)."""
    out = []
    try:
        tasks = sorted(os.listdir(f"/proc/{pid}/task"), key=int)
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def run_cli(*args, env=None, input=None, timeout=300, cwd=None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "rrverify", *map(str, args)], env=full_env,
                          input=input, capture_output=True, timeout=timeout, cwd=cwd)


def record(trace_dir, *cmd, **kw) -> subprocess.CompletedProcess:
    return run_cli("record", "-o", trace_dir, "--", *cmd, **kw)


def replay(trace_dir, *extra, **kw) -> subprocess.CompletedProcess:
    return run_cli("replay", trace_dir, *extra, **kw)


def native(*cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(map(str, cmd)), capture_output=True, timeout=300, **kw)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *fragments: str):
    err = proc.stderr.decode()
    assert proc.returncode == code, (proc.returncode, err)
    assert "Traceback" not in err, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def good_trace(programs, tmp_path_factory):
    """tests/programs/fileio.c recorded once per module, a checkpoint every 20 events: the
    base that trace-damaging tests copy."""
    trace = tmp_path_factory.mktemp("good") / "t"
    proc = run_cli("record", "-o", trace, "--checkpoint-every", 20, "--",
                   programs["fileio"], str(trace.parent))
    assert proc.returncode == 0, proc.stderr
    return trace


@pytest.fixture
def trace(good_trace, tmp_path):
    """A copy of good_trace, this test's to damage."""
    copy = tmp_path / "copy"
    shutil.copytree(good_trace, copy)
    return copy


@pytest.fixture
def recorded_hello(programs, tmp_path):
    trace = tmp_path / "hello"
    proc = record(trace, programs["hello"])
    assert proc.returncode == 0, proc.stderr
    return trace


LONGRUN = os.path.join(HERE, "..", "bench", "workloads", "longrun.py")


@pytest.fixture(scope="session")
def longrun(tmp_path_factory):
    """bench/workloads/longrun.py recorded with a checkpoint every 500 events (>= 16)."""
    if not os.path.exists("/usr/bin/python3"):
        pytest.skip("needs /usr/bin/python3")
    d = tmp_path_factory.mktemp("longrun")
    proc = run_cli("record", "-o", d / "t", "--checkpoint-every", 500, "--",
                   "/usr/bin/python3", LONGRUN, 3000, d)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.startswith(b"longrun: ")
    return d / "t"


@pytest.fixture
def memory_reads(monkeypatch) -> list[int]:
    """[bytes]: what this process reads of tracees' memory (checkpoints: the runs
    capture._read_batch reads; comparisons: TraceeMemory.read) from now on; set it back to
    0 to count afresh."""
    from rrverify._native import lib
    from rrverify.checkpoints import capture, inject
    read = [0]
    real_read, real_batch = inject.TraceeMemory.read, capture._read_batch

    def counting(self, addr, size):
        read[0] += size
        return real_read(self, addr, size)

    def counting_batch(mem, regions, runs, batch, kept, snap):
        read[0] += sum(runs[k].count * 4096 for k in batch if runs[k].kind == lib.RRV_RUN_READ)
        return real_batch(mem, regions, runs, batch, kept, snap)
    monkeypatch.setattr(inject.TraceeMemory, "read", counting)
    monkeypatch.setattr(capture, "_read_batch", counting_batch)
    return read


def fresh_vdso_analysis(monkeypatch, cache_dir) -> bytes:
    """This process's vDSO image, with exec_image's vDSO analyses forgotten (in the process
    and on disk: the analysis cache moved to cache_dir) for the test's duration."""
    from rrverify import exec_image
    with open("/proc/self/maps") as f:
        line = next(l for l in f if l.rstrip().endswith("[vdso]"))
    lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
    with open("/proc/self/mem", "rb", buffering=0) as mem:
        mem.seek(lo)
        image = mem.read(hi - lo)
    monkeypatch.setenv("RRVERIFY_CACHE_DIR", str(cache_dir))
    monkeypatch.setattr(exec_image, "_VDSO_PATCHES", {})
    monkeypatch.setattr(exec_image.VDSO_FUNCTIONS, "_entries", {})
    monkeypatch.setattr(exec_image.VDSO_FUNCTIONS, "_dirty", set())
    return image
