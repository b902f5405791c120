"""The recording driver: starts the tracee, runs the native record loop, and does the rare
work that needs Python (trace files, exec images, mapped-file identities)."""
from __future__ import annotations

import os
import shutil
import signal
import struct
import sys
import time
from dataclasses import dataclass

from .. import events as E
from .. import exec_image, host
from .._native import ffi, lib
from ..errors import NativeError, UnsupportedError, UsageError
from ..trace import TraceWriter
from ..tracee import CallbackTarget, choose_cpu, current_rlimits, getregs, spawn
from . import syscalls

RECORDER_VERSION = 1


@dataclass
class RecordResult:
    trace_dir: str
    exit_status: int          # as the shell reports it: code, or 128 + signal
    events: int
    complete: bool
    reason: str


def wait_status_to_exit_code(status: int) -> int:
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 255


def describe_wait_status(status: int) -> str:
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"wait status {status:#x}"


def resolve_program(program: str) -> str:
    path = program if "/" in program else shutil.which(program)
    if not path or not os.path.isfile(path):
        raise UsageError(f"record: command not found: {program}")
    if not os.access(path, os.X_OK):
        raise UsageError(f"record: not executable: {path}")
    return os.path.abspath(path)


class Recorder(CallbackTarget):
    def __init__(self, writer: TraceWriter):
        super().__init__()
        self.writer = writer
        self.identities = exec_image.FileIdentities(started_ns=time.time_ns())
        self.file_index: dict[tuple, int] = {}

    # -- callbacks from the native loop ---------------------------------------------------
    def blob_put(self, data: bytes) -> bytes:
        return self.writer.put_blob(data)

    def file_mapped(self, pid: int, fd: int) -> int:
        link = f"/proc/{pid}/fd/{fd}"
        return self._file_index(link, os.readlink(link))

    def _file_index(self, open_path: str, display_path: str) -> int:
        ident = self.identities.identify(open_path, display_path)
        key = (ident["path"], ident["blake2b"])
        if key not in self.file_index:
            ident = dict(ident)
            if ident.pop("stored"):
                with open(open_path, "rb") as f:
                    ident["blob"] = self.writer.put_blob(f.read()).hex()
            self.file_index[key] = self.writer.add_file(ident)
        return self.file_index[key]

    # -- the exec image -------------------------------------------------------------------
    def exec_event(self, pid: int) -> bytes:
        """Prepare a fresh image and describe it: registers, the initial stack (which holds
        AT_RANDOM's bytes: replay writes them back), and the files the kernel mapped."""
        exec_image.patch_vdso(pid)
        regs = getregs(pid)
        rsp, stack = exec_image.stack_snapshot(pid, regs["rsp"])
        files = [self._file_index(p, p) for p in exec_image.mapped_file_paths(pid)]
        return E.encode(E.EXEC, regs=regs, tid=pid, writes=[(rsp, stack)],
                        extra=struct.pack(f"<{len(files)}I", *files))


def build_manifest(argv: list[str], exe: str, cpu: int) -> dict:
    return {
        "command": argv, "exe": exe,
        "env": [f"{k}={v}" for k, v in os.environ.items()],
        "cwd": os.getcwd(), "host": host.describe(), "rlimits": current_rlimits(),
        "recorder": {"version": RECORDER_VERSION, "cpu": cpu,
                     "syscalls_known": len(syscalls.TABLE)},
        "started": time.time(),
    }


def record(argv: list[str], trace_dir: str) -> RecordResult:
    exe = resolve_program(argv[0])
    cpu = choose_cpu()
    writer = TraceWriter(trace_dir, build_manifest(argv, exe, cpu), avoid_cpu=cpu)
    rec = Recorder(writer)
    state = ffi.new("struct rrv_recorder *")
    state.handle = rec.handle
    t0 = time.monotonic()
    pid = spawn(exe, argv, writer.manifest["env"], cwd=None, cpu=cpu)
    lib.rrv_record_init(state, pid)
    complete, reason, status = False, "", None
    try:
        while True:
            stop = lib.rrv_record_run(state)
            if state.len:
                writer.add_events(bytes(ffi.buffer(state.buf, state.len)), state.buffered_events)
                state.len = 0
                state.buffered_events = 0
            rec.reraise()
            if stop == lib.RRV_STOP_FLUSH:
                writer.cut_frame()
            elif stop == lib.RRV_STOP_EXEC:
                writer.add_events(rec.exec_event(pid), 1)
            elif stop == lib.RRV_STOP_EXITED:
                status = state.status
                if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
                    reason = ("the tracee was killed by SIGKILL from outside; the trace ends "
                              "where it died")
                else:
                    complete, reason = True, describe_wait_status(status)
                break
            elif stop == lib.RRV_STOP_UNSUPPORTED:
                what = ffi.string(state.message).decode(errors="replace")
                nr = state.stop_nr
                known = syscalls.TABLE.get(nr)
                if known is not None and known.why:
                    what = known.why
                where = (f"syscall {nr} ({syscalls.name_of(nr)})" if nr >= 0 else "signal")
                reason = f"unsupported {where}: {what}"
                raise UnsupportedError(f"record: {reason}; trace left incomplete at {trace_dir}")
            else:
                what = ffi.string(state.message).decode(errors="replace")
                reason = f"recorder error: {what}"
                raise NativeError(f"record: {what}; trace left incomplete at {trace_dir}")
    finally:
        if status is None:
            lib.rrv_kill(pid)
        elapsed = time.monotonic() - t0
        end = {"reason": reason, "wait_status": status,
               "exit_code": None if status is None else wait_status_to_exit_code(status)}
        writer.close(complete=complete, end=end,
                     stats={"syscalls": state.syscalls, "seconds": round(elapsed, 6)})
        lib.rrv_record_free(state)
    return RecordResult(trace_dir, wait_status_to_exit_code(status), writer.events, complete, reason)
