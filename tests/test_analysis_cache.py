"""rrverify/analysis_cache.py: patch plans and vDSO functions kept across recordings by the
content they were computed from. A recording that finds them imports neither capstone nor
pyelftools and patches exactly what a recording without them patches; a damaged, forged or
unwritable cache changes nothing a trace holds. Files' digests kept by their identity spare
the tracer reading and hashing them; a wrong one fails the recording in one line, once."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import zstandard

from rrverify import events as E
from rrverify.analysis_cache import StoredFiles
from rrverify.replayer.replay import replay
from rrverify.trace import Trace, blob_path
from conftest import fresh_vdso_analysis

LS = shutil.which("ls")
RECORD_AND_REPORT = """
import json, sys
from rrverify import exec_image
from rrverify.recorder.record import record
hashed = []
real_digest = exec_image.content_digest
exec_image.content_digest = lambda data: hashed.append(len(data)) or real_digest(data)
from rrverify.analysis_cache import StoredFiles
from rrverify.checkpoints.pages import PageStoreWriter
copied, page_names = [], []
real_blob, real_hash = StoredFiles.blob, PageStoreWriter._hash_pages
StoredFiles.blob = lambda *a: (lambda b: copied.append(b) or b)(real_blob(*a))
PageStoreWriter._hash_pages = lambda self, content, which, count=True: (lambda names: (
    count and page_names.append(len(names))) or names)(real_hash(self, content, which, count))
res = record(sys.argv[2:], sys.argv[1])
print(json.dumps({"complete": res.complete, "files_hashed": len(hashed),
                  "blobs_copied": sum(n is not None for n in copied),
                  "blobs_compressed": sum(n is None for n in copied),
                  "file_pages_hashed": sum(page_names),
                  "imported": [m for m in ("capstone", "elftools") if m in sys.modules]}))
"""


def _record(trace_dir, cache_dir, *cmd) -> dict:
    """Record cmd in a fresh interpreter with that cache directory; what it imported."""
    proc = subprocess.run([sys.executable, "-c", RECORD_AND_REPORT, str(trace_dir), *cmd],
                          env=dict(os.environ, RRVERIFY_CACHE_DIR=str(cache_dir)),
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return json.loads(proc.stdout.decode().splitlines()[-1])


def _patches(trace_dir) -> tuple[int, set[tuple]]:
    """(how many PATCH events, the (site, jump length) of every site they patched) of the
    trace's first process. A PATCH event's writes are (stub, jump) pairs, its own site's
    first."""
    t = Trace(str(trace_dir))
    events = [ev for ev in t.stream(0).events() if ev.kind == E.PATCH]
    return len(events), {(w.addr, w.length) for ev in events for w in ev.writes[1::2]}


def _plan_files(cache_dir):
    return sorted(cache_dir.glob("patch-plans-v*/*.json"))


def test_a_warm_cache_imports_no_decoder_and_patches_the_same_sites(tmp_path):
    cache = tmp_path / "cache"
    cold = _record(tmp_path / "cold", cache, LS, "/")
    warm = _record(tmp_path / "warm", cache, LS, "/")
    assert cold["complete"] and warm["complete"]
    assert cold["imported"] == ["capstone", "elftools"] and warm["imported"] == []
    assert _plan_files(cache) and list(cache.glob("vdso-v*/*.json"))
    events, sites = _patches(tmp_path / "cold")
    assert events == len(sites) >= 3                 # one site at a time, as each is met
    warm_events, warm_sites = _patches(tmp_path / "warm")
    # The sites the cache knows in a file are patched when the first of them is met.
    assert warm_sites == sites and warm_events < events
    assert replay(Trace(str(tmp_path / "warm"))).status == "verified"


def test_damaged_or_forged_cache_files_change_nothing_in_the_trace(tmp_path):
    """Files that are not JSON, of the wrong shape, or plans whose displaced bytes are not
    what the library holds there: the first two are recomputed (and the file rewritten),
    the third fails the check against the process's memory (the site stays unpatched, its
    syscalls traced), and every trace verifies."""
    cache = tmp_path / "cache"
    _record(tmp_path / "first", cache, LS, "/")
    reference = _patches(tmp_path / "first")[1]
    libc_plans = max(_plan_files(cache), key=lambda f: len(json.loads(f.read_text())))
    for damage in (b"\x00garbage", b'{"1": ["plan", "zz", "x"]}', b"[1, 2]", b"{}" * 10):
        libc_plans.write_bytes(damage)
        res = _record(tmp_path / "damaged", cache, LS, "/")
        assert res["complete"] and _patches(tmp_path / "damaged")[1] == reference, damage
        assert replay(Trace(str(tmp_path / "damaged"))).status == "verified"
        json.loads(libc_plans.read_text())           # rewritten, whole
        shutil.rmtree(tmp_path / "damaged")
    plans = json.loads(libc_plans.read_text())
    forged = {k: ["plan", "90" * (len(bytes.fromhex(v[1]))), "nop"] if v[0] == "plan" else v
              for k, v in plans.items()}
    libc_plans.write_text(json.dumps(forged))
    res = _record(tmp_path / "forged", cache, LS, "/")
    assert res["complete"] and res["imported"] == []
    assert _patches(tmp_path / "forged")[1] < reference
    assert replay(Trace(str(tmp_path / "forged"))).status == "verified"


def test_an_unwritable_cache_directory_leaves_recording_as_it_was(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    for _ in range(2):
        res = _record(tmp_path / "t", blocker / "cache", LS, "/")
        assert res["complete"] and res["imported"] == ["capstone", "elftools"]
        shutil.rmtree(tmp_path / "t")


def test_a_plan_made_while_the_file_changed_is_not_kept(monkeypatch, tmp_path):
    """The file at the path may be replaced between the check of its content and the plan
    made from it: a plan is kept only if the file is still that content afterwards."""
    from rrverify.recorder import patch_plan
    from rrverify.recorder.patch_sites import plan_site
    monkeypatch.setenv("RRVERIFY_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(patch_plan.PLANS, "_entries", {})
    monkeypatch.setattr(patch_plan.PLANS, "_dirty", set())
    libc = next(p for p in ("/lib/x86_64-linux-gnu/libc.so.6",
                            "/usr/lib/x86_64-linux-gnu/libc.so.6") if os.path.exists(p))
    with open(libc, "rb") as f:
        data = f.read()
    offset = data.find(b"\x0f\x05")       # the first syscall site that may be patched
    while not isinstance(plan_site(libc, offset), patch_plan.PatchPlan):
        offset = data.find(b"\x0f\x05", offset + 2)
    digest = "ab" * 32
    plan = patch_plan.plan_of(libc, offset, digest, still_same=lambda: False)
    assert isinstance(plan, patch_plan.PatchPlan) and patch_plan.PLANS.entries(digest) == {}
    assert patch_plan.plan_of(libc, offset, digest, still_same=lambda: True) == plan
    assert patch_plan.PLANS.entries(digest) == {str(offset): ["plan", plan.displaced.hex(),
                                                              plan.text]}


def test_a_vdso_entry_of_a_foreign_shape_is_ignored(monkeypatch, tmp_path):
    """A cached vDSO entry of any wrong shape (here a name that is a list) is ignored: the
    image is parsed again, never an exception out of the recorder's exec handling."""
    from rrverify import exec_image
    from rrverify.digests import hex_digest
    image = fresh_vdso_analysis(monkeypatch, tmp_path)
    where = tmp_path / f"vdso-v{exec_image.VDSO_FUNCTIONS.version}"
    where.mkdir()
    for bad in ('{"functions": [[1, ["x"], 0]]}', '{"functions": [[true, "time", 8]]}',
                '{"functions": [[8190, "time", 0]]}', '{"functions": []}'):
        (where / f"{hex_digest(image)}.json").write_text(bad)
        exec_image.VDSO_FUNCTIONS._entries.clear()
        exec_image._VDSO_PATCHES.clear()
        stubs, gadget = exec_image.vdso_patches(image, os.getpid())
        assert stubs and any(off + 5 == gadget for off, _ in stubs), bad


def _files(trace_dir) -> list[tuple]:
    with open(trace_dir / "files.jsonl") as f:
        return [(e["path"], e["size"], e["sha256"]) for e in map(json.loads, f)]


def test_known_files_are_stored_as_before_without_the_tracer_reading_them(tmp_path):
    cache = tmp_path / "cache"
    cold = _record(tmp_path / "cold", cache, LS, "/")
    warm = _record(tmp_path / "warm", cache, LS, "/")
    assert cold["files_hashed"] >= 3 and warm["files_hashed"] == 0    # ls, ld.so, libc...
    assert _files(tmp_path / "warm") == _files(tmp_path / "cold")
    for _, _, sha256 in _files(tmp_path / "warm"):
        assert os.path.exists(blob_path(str(tmp_path / "warm"), bytes.fromhex(sha256)))
    assert replay(Trace(str(tmp_path / "warm"))).status == "verified"


def test_stored_files_are_copied_and_their_pages_named_without_hashing(tmp_path):
    """A file an earlier recording stored is copied into the trace as that recording
    compressed it (a copy: editing the trace does not touch the cache), and its pages' names
    read, not computed; the trace is the same and verifies."""
    cache = tmp_path / "cache"
    cold = _record(tmp_path / "cold", cache, LS, "/")
    warm = _record(tmp_path / "warm", cache, LS, "/")
    assert cold["blobs_copied"] == 0 and cold["blobs_compressed"] >= 3
    assert cold["file_pages_hashed"] > 100
    assert warm["blobs_copied"] == cold["blobs_compressed"] and warm["blobs_compressed"] == 0
    assert warm["file_pages_hashed"] == 0
    assert _files(tmp_path / "warm") == _files(tmp_path / "cold")
    for _, _, sha256 in _files(tmp_path / "warm"):
        blob = blob_path(str(tmp_path / "warm"), bytes.fromhex(sha256))
        kept = cache / "stored-files-v2" / f"{sha256}.zst"
        assert kept.read_bytes()[StoredFiles.SEAL:] == open(blob, "rb").read()
        assert os.stat(blob).st_ino != os.stat(kept).st_ino
    assert replay(Trace(str(tmp_path / "warm"))).status == "verified"


def _seal(payload: bytes) -> bytes:
    return StoredFiles.MAGIC + hashlib.sha256(payload).digest() + payload


def test_damaged_stored_files_are_not_used_or_never_verify(tmp_path):
    """A stored file whose seal does not match (damaged on disk: a byte changed, a tail lost),
    a blob whose frame does not name the file's size, a page list wrong at the pages checked
    (first, middle, last) or calling zero a page that is not, is ignored (compressed and named
    again) and replaced. Wrong names elsewhere, sealed (the cache is trusted as the user's
    own), make a trace whose replay fails, never one that verifies."""
    cache = tmp_path / "cache"
    _record(tmp_path / "first", cache, LS, "/")
    stored = cache / "stored-files-v2"
    for f in stored.glob("*"):
        raw = bytearray(f.read_bytes())
        raw[-1] ^= 1
        f.write_bytes(bytes(raw[:-16]) if f.suffix == ".pages" else bytes(raw))
    res = _record(tmp_path / "damaged", cache, LS, "/")
    assert res["blobs_copied"] == 0 and res["file_pages_hashed"] > 100
    assert replay(Trace(str(tmp_path / "damaged"))).status == "verified"
    for blob in stored.glob("*.zst"):           # replaced, whole; now the wrong size, sealed
        blob.write_bytes(_seal(zstandard.ZstdCompressor().compress(b"other content")))
    for names in stored.glob("*.pages"):        # all zero but where checked, sealed
        raw = bytearray(names.read_bytes()[StoredFiles.SEAL:])
        pages = len(raw) // 16
        for i in set(range(pages)) - {0, pages // 2, pages - 1}:
            raw[16 * i:16 * i + 16] = bytes(16)
        names.write_bytes(_seal(bytes(raw)))
    res = _record(tmp_path / "zeroed", cache, LS, "/")
    assert res["blobs_copied"] == 0 and res["file_pages_hashed"] > 100
    assert replay(Trace(str(tmp_path / "zeroed"))).status == "verified"
    for names in stored.glob("*.pages"):        # forged but where checked, sealed
        raw = bytearray(names.read_bytes()[StoredFiles.SEAL:])
        pages = len(raw) // 16
        for i in set(range(pages)) - {0, pages // 2, pages - 1}:
            raw[16 * i] ^= 0xff
        names.write_bytes(_seal(bytes(raw)))
    res = _record(tmp_path / "forged", cache, LS, "/")
    assert res["file_pages_hashed"] == 0
    replayed = subprocess.run([sys.executable, "-m", "rrverify", "replay",
                               str(tmp_path / "forged")], capture_output=True, timeout=300)
    assert replayed.returncode != 0 and not replayed.stdout.startswith(b"verified"), \
        replayed.stdout


def test_a_wrong_file_digest_in_the_cache_fails_one_recording_in_one_line(tmp_path):
    cache = tmp_path / "cache"
    _record(tmp_path / "first", cache, LS, "/")
    known = cache / "file-digests-v3.json"
    entries = json.loads(known.read_text())
    # the digests wrong, their check values (seeded by the right ones) as they were
    known.write_text(json.dumps({k: "ab" * 32 + v[64:] for k, v in entries.items()}))
    cli = subprocess.run([sys.executable, "-m", "rrverify", "record", "-o",
                          str(tmp_path / "forged"), "--", LS, "/"], capture_output=True,
                         env=dict(os.environ, RRVERIFY_CACHE_DIR=str(cache)), timeout=120)
    err = cli.stderr.decode().strip()
    assert cli.returncode != 0 and len(err.splitlines()) == 1, err
    assert "is not the SHA-256 abababababababab... the rrverify cache gave" in err, err
    assert not any(v.startswith("ab" * 32) for v in json.loads(known.read_text()).values())
    replayed = subprocess.run([sys.executable, "-m", "rrverify", "replay",
                               str(tmp_path / "forged")], capture_output=True, timeout=300)
    assert replayed.returncode != 0 and b"verified" not in replayed.stdout
    again = _record(tmp_path / "again", cache, LS, "/")
    assert again["complete"] and _files(tmp_path / "again") == _files(tmp_path / "first")


def test_known_sites_are_patched_with_the_met_one_unless_a_signal_frame_may_hold_one(
        monkeypatch, tmp_path):
    """recorder/patch.py: decide on this test's own libc, two of whose sites the cache knows:
    met at one, both are patched, each stub after the last; after a signal delivery (a frame
    may hold a saved ip inside the other), or with no room in the first half of the stub
    memory, the met site alone."""
    import types
    from rrverify.exec_image import region_at
    from rrverify.recorder import patch, patch_plan
    from rrverify.recorder.patch_sites import plan_site
    monkeypatch.setenv("RRVERIFY_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(patch_plan.PLANS, "_entries", {})
    monkeypatch.setattr(patch_plan.PLANS, "_dirty", set())
    with open("/proc/self/maps") as f:
        text = next(line.split() for line in f
                    if "libc.so" in line and line.split()[1].startswith("r-x"))
    start, end = (int(x, 16) for x in text[0].split("-"))
    region = region_at(os.getpid(), start)
    with open(region["path"], "rb") as f:
        data = f.read()
    sites, offset = [], region["offset"]
    while len(sites) < 2:
        offset = data.find(b"\x0f\x05", offset + 1)
        assert 0 < offset < region["offset"] + end - start, "no two patchable sites in libc"
        if isinstance(plan_site(region["path"], offset), patch_plan.PatchPlan):
            sites.append(offset)
    digest = "ab" * 32
    for offset in sites:
        patch_plan.plan_of(region["path"], offset, digest, still_same=lambda: True)
    addresses = [start + offset - region["offset"] for offset in sites]

    def decide(**state):
        fields = dict(patch_site=addresses[0], stubs=start - (1 << 20), stubs_used=0,
                      stubs_size=1 << 16, hook_entry=start, signal_delivered=0)
        return patch.decide(os.getpid(), types.SimpleNamespace(**dict(fields, **state)),
                            lambda region: digest)

    both = decide()
    assert [site for site, _, _ in both] == addresses
    assert both[1][1] == both[0][1] + ((len(both[0][2].stub) + 15) & ~15)
    assert [site for site, _, _ in decide(signal_delivered=1)] == addresses[:1]
    assert [site for site, _, _ in decide(stubs_size=160)] == addresses[:1]
