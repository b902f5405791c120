"""What recording and replay both do to a freshly exec'd image, before its first instruction,
and the identities of the files it maps.

The vDSO's time functions read the clock without a syscall, invisible to ptrace; we overwrite
each with a stub that makes the real syscall (found by symbol with pyelftools), so the time
becomes a recorded syscall result. Doing the same in record and replay keeps the images equal.
"""
from __future__ import annotations

import hashlib
import io
import os
import struct

from elftools.elf.elffile import ELFFile
from elftools.common.exceptions import ELFError

from .errors import NativeError, TraceError

AT_SYSINFO_EHDR = 33

# vDSO function -> syscall number its stub makes (None: report ENOSYS so libc falls back to
# the syscall itself).
VDSO_SYSCALLS = {"clock_gettime": 228, "gettimeofday": 96, "time": 201, "getcpu": 309,
                 "clock_getres": 229, "getrandom": None}


def _stub(nr: int | None) -> bytes:
    if nr is None:
        return b"\x48\xc7\xc0\xda\xff\xff\xff\xc3"        # mov $-ENOSYS, %rax; ret
    return b"\xb8" + struct.pack("<I", nr) + b"\x0f\x05\xc3"  # mov $nr, %eax; syscall; ret


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
                            "offset": int(parts[2], 16), "inode": int(parts[4]),
                            "path": parts[5].strip() if len(parts) > 5 else ""})
    return regions


def patch_vdso(pid: int) -> list[str]:
    """Replace the vDSO's clock functions with syscall stubs. Returns the functions patched."""
    base = read_auxv(pid).get(AT_SYSINFO_EHDR)
    if not base:
        return []
    vdso = next((r for r in read_maps(pid) if r["start"] == base), None)
    if vdso is None:
        raise NativeError(f"pid {pid}: the vDSO at {base:#x} is not in /proc/{pid}/maps")
    with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
        mem.seek(base)
        image = mem.read(vdso["end"] - base)
        try:
            elf = ELFFile(io.BytesIO(image))
            dynsym = elf.get_section_by_name(".dynsym")
        except ELFError as e:
            raise NativeError(f"pid {pid}: cannot parse the vDSO: {e}") from None
        patched = {}
        for sym in dynsym.iter_symbols():
            name = sym.name.removeprefix("__vdso_")
            if name in VDSO_SYSCALLS and sym["st_value"] and sym["st_info"]["type"] == "STT_FUNC":
                patched[sym["st_value"]] = name
        for addr, name in sorted(patched.items()):
            mem.seek(base + addr)
            mem.write(_stub(VDSO_SYSCALLS[name]))
    return sorted(set(patched.values()))


def stack_snapshot(pid: int, rsp: int) -> tuple[int, bytes]:
    """The initial stack from rsp to its top: argv, environment, auxv, AT_RANDOM's bytes."""
    stack = next((r for r in read_maps(pid) if r["path"] == "[stack]"), None)
    if stack is None or not stack["start"] <= rsp < stack["end"]:
        raise NativeError(f"pid {pid}: rsp {rsp:#x} is not in the [stack] mapping")
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        mem.seek(rsp)
        return rsp, mem.read(stack["end"] - rsp)


def mapped_file_paths(pid: int) -> list[str]:
    """Files the kernel mapped at exec (the program and its interpreter), in address order."""
    seen = []
    for r in read_maps(pid):
        if r["inode"] and r["path"].startswith("/") and r["path"] not in seen:
            seen.append(r["path"])
    return seen


# Package-managed locations: a file here that the recording did not modify is referenced by
# path and content hash; replay reads it on the replaying machine and checks the hash. Every
# other mapped file (the user's own programs, files the tracee wrote, deleted files, memfds)
# is stored in the trace.
SYSTEM_PREFIXES = ("/usr/", "/lib/", "/lib32/", "/lib64/", "/bin/", "/sbin/", "/etc/")


class FileIdentities:
    """Content identities of files, computed once per (device, inode, size, mtime)."""

    def __init__(self, started_ns: int = 0):
        self._cache: dict[tuple, dict] = {}
        self.started_ns = started_ns

    def identify(self, open_path: str, display_path: str) -> dict:
        """Identity of the file at open_path (which may be /proc/PID/fd/N): path, size, mtime,
        BLAKE2b-256 of the content, and whether the trace must store the content
        ("stored": see SYSTEM_PREFIXES)."""
        st = os.stat(open_path)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, display_path)
        if key not in self._cache:
            h = hashlib.blake2b(digest_size=32)
            size = 0
            with open(open_path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
                    size += len(chunk)
            by_reference = False
            if display_path.startswith(SYSTEM_PREFIXES) and st.st_mtime_ns < self.started_ns:
                try:
                    again = os.stat(display_path)
                    by_reference = (again.st_dev, again.st_ino) == (st.st_dev, st.st_ino)
                except OSError:
                    pass
            self._cache[key] = {"path": display_path, "size": size, "mtime_ns": st.st_mtime_ns,
                                "blake2b": h.hexdigest(), "stored": not by_reference}
        return self._cache[key]


def load_recorded_file(ident: dict, trace) -> bytes:
    """The content of a file the recording mapped, checked against its recorded identity."""
    if "blob" in ident:
        return trace.blob(bytes.fromhex(ident["blob"]))
    path = ident["path"]
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TraceError(f"mapped file {path} cannot be read on this machine: {e.strerror}") from None
    if hashlib.blake2b(data, digest_size=32).hexdigest() != ident["blake2b"]:
        raise TraceError(f"mapped file {path} has changed since it was recorded "
                         f"(its content hash differs); replay needs the recorded file")
    return data
