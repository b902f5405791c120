"""Real system programs recorded and replay-verified, with output equal to a native run."""
from __future__ import annotations

import os
import shutil

import pytest

from conftest import native, record, replay


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("data") / "input.txt"
    rnd = __import__("random").Random(7)
    with open(p, "w") as f:
        while f.tell() < 1 << 20:
            f.write("%08x %s\n" % (rnd.getrandbits(32), "x" * rnd.randrange(40)))
    return str(p)


PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else shutil.which("python3")
PY_SCRIPT = ("import json, hashlib, os, sys\n"
             "p = sys.argv[1] + '/f.json'\n"
             "open(p, 'w').write(json.dumps({'h': hashlib.sha256(b'abc').hexdigest()}))\n"
             "print(json.loads(open(p).read())['h'])\n"
             "os.unlink(p)\n")

CASES = {
    "ls": lambda d, t: ["ls", "-la", "/usr/lib"],
    "sort": lambda d, t: ["sort", "--parallel=1", d],
    "gzip": lambda d, t: ["gzip", "-c", d],
    "sha256sum": lambda d, t: ["sha256sum", d],
    "sqlite3": lambda d, t: ["sqlite3", ":memory:", "create table t(a, b);"
                             "insert into t values (1, 'x'), (2, 'y'); select * from t;"
                             "select sum(a) from t;"],
    "python3": lambda d, t: [PY, "-c", PY_SCRIPT, t],
    "perl": lambda d, t: ["perl", "-e", 'open(F, "<", $ARGV[0]) or die; my $n = 0; '
                          '$n++ while <F>; print "$n\\n";', d],
    "cat": lambda d, t: ["cat", d],
    "head": lambda d, t: ["head", "-5", d],
    "wc": lambda d, t: ["wc", d],
    "stat": lambda d, t: ["stat", "-c", "%s %F", d],
    "readlink": lambda d, t: ["readlink", "-f", "/usr/bin/python3"],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_system_binary(name, data_file, tmp_path):
    cmd = CASES[name](data_file, str(tmp_path))
    if not shutil.which(cmd[0]):
        pytest.skip(f"{cmd[0]} not installed")
    trace = tmp_path / "trace"
    rec = record(trace, *cmd)
    assert rec.returncode == 0, rec.stderr.decode()
    assert rec.stdout == native(*cmd).stdout
    rep = replay(trace)
    assert rep.returncode == 0, rep.stdout.decode() + rep.stderr.decode()
    assert rep.stdout.decode().startswith("verified: 1 process")


GIT_SCRIPT = ('rm -rf "$0/repo" && git init -q "$0/repo" && cd "$0/repo" && cp "$1" data.txt && '
              'git add data.txt && git -c user.name=t -c user.email=t@t commit -qm first && '
              'echo more >> data.txt && git --no-pager diff --stat && git status --short && '
              'git -c user.name=t -c user.email=t@t commit -qam second && '
              'git --no-pager log --format=%s && git --no-pager show --stat --format=%s HEAD')


def test_git_commits_diffs_and_logs_in_a_new_repository(data_file, tmp_path):
    """git as a user runs it: a shell, and a git process (and its children) per command, on a
    repository the command creates. (git gc and repack use threads: not supported yet.)"""
    if not shutil.which("git"):
        pytest.skip("git not installed")
    cmd = ["/bin/sh", "-c", GIT_SCRIPT, str(tmp_path), data_file]
    trace = tmp_path / "trace"
    rec = record(trace, *cmd)
    assert rec.returncode == 0, rec.stderr.decode()
    assert rec.stdout == native(*cmd).stdout
    assert b"second\nfirst\n" in rec.stdout
    rep = replay(trace)
    assert rep.returncode == 0, rep.stdout.decode() + rep.stderr.decode()
    processes = int(rep.stdout.decode().split("verified: ")[1].split(" process")[0])
    assert processes >= 8
