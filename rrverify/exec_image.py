"""What recording and replay both do to a freshly exec'd image, before its first instruction,
and the identities of the files it maps.

The vDSO's time functions read the clock without a syscall, invisible to ptrace; we overwrite
each with a stub that makes the real syscall (found by symbol with pyelftools), so the time
becomes a recorded syscall result. Doing the same in record and replay keeps the images equal.
"""
from __future__ import annotations

import errno
import io
from dataclasses import dataclass, field
import os
import re
import stat
import struct
import time

from ._native import ffi, lib
from .analysis_cache import KNOWN_FILES, ContentCache
from .digests import content_check, hex_digest
from .errors import NativeError, TraceError
from .trace import FileToRead
from .recorder.syscalls import NUMBERS

AT_SYSINFO_EHDR = 33

# vDSO function -> syscall number its stub makes (None: report ENOSYS so libc falls back to
# the syscall itself).
VDSO_SYSCALLS = {name: NUMBERS[name] for name in
                 ("clock_gettime", "gettimeofday", "time", "getcpu", "clock_getres")}
VDSO_SYSCALLS["getrandom"] = None


def _stub(nr: int | None, room: int) -> bytes:
    if nr is None:
        return b"\x48\xc7\xc0\xda\xff\xff\xff\xc3"        # mov $-ENOSYS, %rax; ret
    stub = b"\xb8" + struct.pack("<I", nr) + b"\x0f\x05\xc3"  # mov $nr, %eax; syscall; ret
    # two int3 after it, where the function has room: the recorder's patcher may then turn
    # its syscall into a 5-byte jump (recorder/patch.py) and the call is buffered
    return stub + b"\xcc\xcc" if room >= len(stub) + 2 else stub


def read_auxv(pid: int) -> dict[int, int]:
    with open(f"/proc/{pid}/auxv", "rb") as f:
        data = f.read()
    words = struct.unpack(f"<{len(data) // 8}Q", data[:len(data) // 8 * 8])
    return {words[i]: words[i + 1] for i in range(0, len(words) - 1, 2) if words[i]}


def read_maps(pid: int) -> list[dict]:
    regions = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            regions.append({"start": start, "end": end, "perms": parts[1],
                            "offset": int(parts[2], 16), "dev": parts[3], "inode": int(parts[4]),
                            "path": parts[5].strip() if len(parts) > 5 else ""})
    return regions


_vma_query_works = True     # until a kernel says it has no PROCMAP_QUERY


def region_at(pid: int, addr: int) -> dict | None:
    """The region of read_maps(pid) holding addr, or None (a process gone: no regions):
    asked of the kernel for that one address where it can (PROCMAP_QUERY, Linux 6.11),
    instead of listing every mapping. The kernel's answer differs from the maps file's only
    where the file cannot say it exactly: it has no [vsyscall] (not a mapping), and a path
    comes as it is (no trailing spaces dropped, no newline escaped)."""
    global _vma_query_works
    if _vma_query_works:
        vma = ffi.new("struct rrv_vma *")
        found = lib.rrv_vma_at(pid, addr, vma)
        if found == 1:
            p = vma.perms
            return {"start": vma.start, "end": vma.end,
                    "perms": "".join((c if p & bit else "-") for c, bit in (
                        ("r", lib.RRV_VMA_READ), ("w", lib.RRV_VMA_WRITE),
                        ("x", lib.RRV_VMA_EXEC))) + ("s" if p & lib.RRV_VMA_SHARED else "p"),
                    "offset": vma.offset, "dev": f"{vma.dev_major:02x}:{vma.dev_minor:02x}",
                    "inode": vma.inode, "path": ffi.string(vma.name).decode(errors="replace")}
        if found == 0 or ffi.errno == errno.ESRCH:     # (ESRCH: a zombie, as read_maps: [])
            return None
        if ffi.errno not in (errno.ENOTTY, errno.EINVAL):
            raise OSError(ffi.errno, os.strerror(ffi.errno), f"/proc/{pid}/maps")
        _vma_query_works = False
    return next((r for r in read_maps(pid) if r["start"] <= addr < r["end"]), None)


# The vDSO's bytes (as the kernel maps them into every process) -> the stubs patch_vdso
# writes over them, (offset in the image, bytes), and the gadget's offset. The vDSO is the same
# in every process of a kernel, so each exec costs one read of it instead of an ELF parse.
_VDSO_PATCHES: dict[bytes, tuple[tuple[tuple[int, bytes], ...], int]] = {}
MAX_VDSO_IMAGES = 4


def _valid_vdso_entry(key: str, value) -> bool:
    """VDSO_FUNCTIONS' one entry: "functions": [[offset, name, size], ...]."""
    return key == "functions" and isinstance(value, list) and value != [] and all(
        isinstance(f, list) and len(f) == 3 and type(f[0]) is int and type(f[2]) is int and
        isinstance(f[1], str) and f[1] in VDSO_SYSCALLS and 0 < f[0] < 1 << 20 and
        0 <= f[2] < 1 << 16 for f in value)


# The functions of a vDSO image patch_vdso replaces, by the image's SHA-256, across recordings
# (rrverify/analysis_cache.py): found by symbol with pyelftools, which is then not imported.
# (The version names the functions looked for: another set keeps its own entries.)
VDSO_FUNCTIONS = ContentCache("vdso", "1-" + "-".join(sorted(VDSO_SYSCALLS)),
                              _valid_vdso_entry)


def _vdso_functions(image: bytes, pid: int) -> dict[int, tuple[str, int]]:
    """offset -> (name, size) of the functions of VDSO_SYSCALLS the image defines."""
    digest = hex_digest(image)
    cached = VDSO_FUNCTIONS.entries(digest).get("functions")
    if cached is not None and all(
            off + max(size, len(_stub(VDSO_SYSCALLS[name], size))) <= len(image)
            for off, name, size in cached):
        return {off: (name, size) for off, name, size in cached}
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    try:
        elf = ELFFile(io.BytesIO(image))
        dynsym = elf.get_section_by_name(".dynsym")
    except ELFError as e:
        raise NativeError(f"pid {pid}: cannot parse the vDSO: {e}") from None
    patched = {}
    for sym in dynsym.iter_symbols():
        name = sym.name.removeprefix("__vdso_")
        if name in VDSO_SYSCALLS and sym["st_value"] and sym["st_info"]["type"] == "STT_FUNC":
            patched[sym["st_value"]] = (name, sym["st_size"])
    VDSO_FUNCTIONS.add(digest, "functions", [[off, name, size]
                                             for off, (name, size) in sorted(patched.items())])
    return patched


def vdso_patches(image: bytes, pid: int) -> tuple[tuple[tuple[int, bytes], ...], int]:
    """(offset, stub) for every function patch_vdso replaces in this vDSO image, and the
    gadget's offset: found by symbol once per image, then remembered."""
    known = _VDSO_PATCHES.get(image)
    if known is not None:
        return known
    patched = _vdso_functions(image, pid)
    gadget = None
    for addr, (name, _) in sorted(patched.items()):
        if VDSO_SYSCALLS[name] is not None:
            gadget = addr + 5       # after `mov $nr, %eax`
    if gadget is None:
        raise NativeError(f"pid {pid}: the vDSO has none of {sorted(VDSO_SYSCALLS)}")
    if len(_VDSO_PATCHES) >= MAX_VDSO_IMAGES:
        _VDSO_PATCHES.clear()
    known = _VDSO_PATCHES[image] = (
        tuple((addr, _stub(VDSO_SYSCALLS[name], size))
              for addr, (name, size) in sorted(patched.items())),
        gadget)
    return known


def patch_vdso(pid: int) -> int:
    """Replace the vDSO's clock functions with syscall stubs. Returns the address of a
    `syscall` instruction in one of them: checkpoints inject syscalls through it."""
    base = read_auxv(pid).get(AT_SYSINFO_EHDR)
    if not base:
        raise NativeError(f"pid {pid} has no vDSO: rrverify needs one (vdso=0 on the kernel "
                          f"command line?)")
    with open(f"/proc/{pid}/maps") as f:
        line = next((line for line in f if line.startswith(f"{base:08x}-")), None)
    if line is None:
        raise NativeError(f"pid {pid}: the vDSO at {base:#x} is not in /proc/{pid}/maps")
    end = int(line.split(None, 1)[0].split("-")[1], 16)
    with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
        mem.seek(base)
        stubs, gadget = vdso_patches(mem.read(end - base), pid)
        for addr, stub in stubs:
            mem.seek(base + addr)
            mem.write(stub)
    return base + gadget


def mapped_file_paths(pid: int) -> list[str]:
    """Files the kernel mapped at exec (the program and its interpreter), in address order."""
    seen = []
    for r in read_maps(pid):
        if r["inode"] and r["path"].startswith("/") and r["path"] not in seen:
            seen.append(r["path"])
    return seen


# A file hashed within this long of its last change may change again within the same tick
# of the filesystem's clock, its times unchanged ("racy git"): its identity is not kept.
RACY_NS = 1_000_000_000
_PROC_FD = re.compile(r"/proc/(\d+)/fd/(\d+)")


def content_digest(data: bytes) -> str:
    """A file's SHA-256, in hex: its files.jsonl `sha256` and the name of its blob."""
    return hex_digest(data)


def maps_dev(st_dev: int) -> str:
    """A device number as /proc/PID/maps shows it."""
    return f"{os.major(st_dev):02x}:{os.minor(st_dev):02x}"


def mapped_shared_writable(open_path: str, st: os.stat_result) -> bool:
    """Whether open_path, when it is a tracee's /proc/PID/fd/N, is open for writing while that
    process maps the file shared: the file may then change through the mapping with no
    timestamp showing it. (A shared mapping can only be writable through a descriptor open
    for writing, which the link's mode shows.) Unsure counts as yes."""
    m = _PROC_FD.fullmatch(open_path)
    if m is None:
        return False
    try:
        if not os.lstat(open_path).st_mode & stat.S_IWUSR:
            return False
        maps = read_maps(int(m[1]))
    except OSError:
        return True
    dev = maps_dev(st.st_dev)
    return any(r["perms"][3] == "s" and r["inode"] == st.st_ino and r["dev"] == dev
               for r in maps)


def _known_identity(st: os.stat_result) -> str:
    """A file's key in analysis_cache.KNOWN_FILES."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


class FileIdentities:
    """Content identities of mapped files, each file read and hashed once per trace: a file met
    again under the same path with the same (device, inode, size, mtime, ctime) is taken to
    have the same content, unless its times may not show a change: it changed within RACY_NS
    of being hashed, or a tracee has ever mapped it shared from a descriptor open for writing.
    Such files are read and hashed each time they are met.

    The first time a trace meets a file, its content is stored. If an earlier recording
    hashed the same identity (analysis_cache.KNOWN_FILES, by the same rules), the file is
    named by that digest at once, and read and checked by the trace writer's thread
    (trace.FileToRead); else it is read and hashed here."""

    def __init__(self):
        self._cache: dict[tuple, dict] = {}
        self._written: set[tuple] = set()   # (st_dev, st_ino) mapped shared and writable
        # (st_dev, st_ino) -> (size, mtime, ctime, sha256) of a file whose times do show a
        # change since it was hashed (not racy, not written shared)
        self._stable: dict[tuple, tuple] = {}
        self.reads = 0                      # files read and hashed so far

    def identify_range(self, open_path: str, display_path: str, offset: int,
                       length: int) -> tuple[dict, bytes, tuple]:
        """identify() for a file too large to store whole: only [offset, offset + length),
        holes (SEEK_DATA/SEEK_HOLE) left as zeros without being read."""
        st = os.stat(open_path)
        end = min(st.st_size, offset + length)
        data = bytearray(max(0, end - offset))
        fd = os.open(open_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            pos = offset
            while pos < end:
                try:
                    pos = os.lseek(fd, pos, os.SEEK_DATA)
                except OSError:              # ENXIO: no more data
                    break
                hole = min(end, os.lseek(fd, pos, os.SEEK_HOLE))
                while pos < hole:
                    chunk = os.pread(fd, min(hole - pos, 1 << 24), pos)
                    if not chunk:
                        break
                    data[pos - offset:pos - offset + len(chunk)] = chunk
                    pos += len(chunk)
        finally:
            os.close(fd)
        data = bytes(data)
        self.reads += 1
        return ({"path": display_path, "size": st.st_size, "offset": offset,
                 "mtime_ns": st.st_mtime_ns, "sha256": content_digest(data)},
                data, (maps_dev(st.st_dev), st.st_ino))

    def identify(self, open_path: str, display_path: str, st: os.stat_result | None = None,
                 before: int | None = None) -> tuple[dict, bytes | FileToRead | None, tuple]:
        """Identity (path, size, mtime, SHA-256) of the file at open_path (which may be
        /proc/PID/fd/N, so deleted files and memfds work too), its content when it was read
        (None when the identity was known in this trace: a program maps a library four or five
        times, and every process of a build maps libc; a FileToRead when an earlier recording
        hashed it), and the (dev, inode) by which /proc/PID/maps names it. st: open_path's
        stat, if the caller has it, taken after time `before`."""
        if st is None or before is None:
            before = time.time_ns()
            st = os.stat(open_path)
        file = (st.st_dev, st.st_ino)
        where = (maps_dev(st.st_dev), st.st_ino)
        if file not in self._written and mapped_shared_writable(open_path, st):
            self._written.add(file)
        key = (*file, st.st_size, st.st_mtime_ns, st.st_ctime_ns, display_path)
        ident = self._cache.get(key)
        if ident is not None and file not in self._written:
            return ident, None, where
        lasting = file not in self._written and \
            max(st.st_mtime_ns, st.st_ctime_ns) + RACY_NS <= before
        known = _known_identity(st)
        data = self._to_read(open_path, display_path, st, known) if lasting else None
        if data is None:
            with open(open_path, "rb") as f:
                data = f.read()
            self.reads += 1
            digest = content_digest(data)
            if lasting and len(data) == st.st_size:
                KNOWN_FILES.add(known, digest, content_check(data, digest))
        else:
            digest = data.sha256
        ident = {"path": display_path, "size": len(data), "mtime_ns": st.st_mtime_ns,
                 "sha256": digest}
        if lasting:
            self._cache[key] = ident
            self._stable[file] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest)
        else:
            self._cache.pop(key, None)
            self._stable.pop(file, None)
        return ident, data, where

    @staticmethod
    def _to_read(open_path: str, display_path: str, st: os.stat_result,
                 known: str) -> FileToRead | None:
        """The file, to be read by the trace writer's thread, if an earlier recording hashed
        this identity of it: opened now, while open_path names it (a /proc/PID/fd link
        outlives no process)."""
        entry = KNOWN_FILES.get(known)
        if entry is None:
            return None
        digest, check = entry
        try:
            fd = os.open(open_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            same = _known_identity(os.fstat(fd)) == known
        except OSError:
            same = False
        if not same:
            os.close(fd)
            return None

        return FileToRead(fd, st.st_size, digest, check, display_path,
                          lambda fd: _known_identity(os.fstat(fd)) != known,
                          KNOWN_FILES.clear)

    def unchanged(self, path: str, sha256: str) -> bool:
        """Is the file at path (e.g. /proc/PID/map_files/RANGE) still, by its times, the
        content that was hashed as sha256 (hashed with times that would show a change since,
        and never mapped shared and writable)? Then a page a private mapping of it has not
        copied holds the file's bytes (checkpoints/capture.py reads none of them)."""
        try:
            st = os.stat(path)
        except OSError:
            return False
        file = (st.st_dev, st.st_ino)
        return file not in self._written and self._stable.get(file) == (
            st.st_size, st.st_mtime_ns, st.st_ctime_ns, sha256)


@dataclass
class RecordedFile:
    """A mapped file as the trace holds it: its size, and its bytes from `offset` on (the whole
    file, or for a large one only the range a mapping of it covered)."""
    size: int
    offset: int
    data: bytes
    digests: dict = field(default_factory=dict)     # file offset -> page digest, as computed
    base: "RecordedFile | None" = None    # a writable_copy's original: its unchanged pages'
    changed: set = field(default_factory=set)   # digests are the original's

    @property
    def whole(self) -> bool:
        return self.offset == 0 and len(self.data) == self.size

    def writable_copy(self) -> "RecordedFile":
        """A copy that write() may change; its bytes are copied on the first write, and the
        original keeps computing the digests of the pages it did not change."""
        return RecordedFile(self.size, self.offset, self.data, base=self)

    def write(self, off: int, data: bytes) -> None:
        """What went into the file at `off` (on a writable_copy): within the bytes held."""
        lo, hi = max(off, self.offset), min(off + len(data), self.offset + len(self.data))
        if lo < hi:
            if not isinstance(self.data, bytearray):
                self.data = bytearray(self.data)
            self.data[lo - self.offset:hi - self.offset] = data[lo - off:hi - off]
            for page in range(lo - lo % 4096, hi, 4096):
                self.changed.add(page)
                self.digests.pop(page, None)

    def page_digest(self, off: int, digest_of) -> bytes | None:
        """digest_of(page(off)), computed once per page; None where the trace holds no bytes."""
        if self.base is not None and off not in self.changed:
            return self.base.page_digest(off, digest_of)
        if off not in self.digests:
            page = self.page(off)
            self.digests[off] = None if page is None else digest_of(page)
        return self.digests[off]

    def page(self, off: int) -> bytes | None:
        """The 4096 bytes at file offset `off` (zero past the end of the file, as a mapping
        shows them before it faults), or None where the trace does not hold them."""
        if off >= self.size:
            return bytes(4096)
        end = min(off + 4096, self.size)
        if off < self.offset or end > self.offset + len(self.data):
            return None
        return bytes(self.data[off - self.offset:end - self.offset]).ljust(4096, b"\0")


def recorded_file(trace, index: int) -> RecordedFile:
    """Files.jsonl entry `index`, its bytes from the trace's blob store."""
    files = trace.files
    if not 0 <= index < len(files):
        raise TraceError(f"{trace.path}: mapped file #{index} is not in files.jsonl")
    entry = files[index]
    data = load_recorded_file(entry, trace)
    offset = entry.get("offset", 0)
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0 or \
            offset + len(data) > entry["size"] or ("offset" not in entry and
                                                   len(data) != entry["size"]):
        raise TraceError(f"{trace.path}: files.jsonl entry {index} is corrupted (its bytes do "
                         f"not fit the file's size)")
    return RecordedFile(entry["size"], offset, data)


def load_recorded_file(ident: dict, trace) -> bytes:
    """The content of a file the recording mapped: always from the trace's blob store."""
    try:
        digest = bytes.fromhex(ident["blob"])
    except (KeyError, TypeError, ValueError):
        raise TraceError(f"{trace.path}: files.jsonl entry {ident.get('index')} has no valid "
                         f"blob") from None
    return trace.blob(digest)
