"""The recording driver: starts the tracee, runs the native record loop, and does the rare
work that needs Python (trace files, exec images, mapped files, checkpoints)."""
from __future__ import annotations

import gc
import os
import resource
import shutil
import signal
import stat
import struct
import sys
import threading
import time
from dataclasses import dataclass

from .. import events as E
from .. import analysis_cache, exec_image, host, preload
from .._native import ffi, lib
from ..checkpoints.capture import UnchangedPages, snapshot
from ..checkpoints.finisher import CheckpointFinisher
from ..checkpoints.model import TRAPS
from ..checkpoints.inject import Injector, TraceeMemory, put_back_segv, signal_pending
from ..checkpoints.pages import PageStoreWriter
from ..errors import NativeError, TraceError, TraceeDied, UnsupportedError, UsageError
from ..trace import FileToRead, TraceWriter
from ..tracee import CallbackTarget, choose_cpu, current_rlimits, getregs, spawn
from . import patch, syscalls

RECORDER_VERSION = 1
DEFAULT_CHECKPOINT_EVERY = 20000       # events
DEFAULT_CHECKPOINT_INTERVAL = 2.0      # seconds
TRACEE_CPUS = ("all", "spread", "tracer")
# Measured (bench/multiprocess.py, a 2-CPU VM): a ptrace stop that crosses CPUs costs 20 times
# one that does not, so a process runs on its own tracer thread's CPU; with a tracer thread per
# CPU the processes of a build run in parallel. Every process sees the CPUs it would natively
# (cpu_view).
DEFAULT_TRACEE_CPUS = "spread"
MAX_TRACERS = 16        # tracer threads of a "spread" recording, one per CPU
CLONE_PARENT = 0x8000
EUID = os.geteuid()
# Syscalls a process waits in, for a child, a signal, time or an event: it leaves its CPU to
# the others. (Not read: ld.so's reads of a library, traced, take a moment.)
WAITING_SYSCALLS = frozenset(syscalls.NUMBERS[n] for n in (
    "wait4", "waitid", "vfork", "clone", "clone3", "pause", "rt_sigsuspend", "nanosleep",
    "clock_nanosleep", "select", "pselect6", "poll", "ppoll", "epoll_wait", "epoll_pwait",
    "futex"))
# Mapped files up to this size stay in memory while recording, so checkpoint pages equal to
# them are stored as references to the file's blob instead of again.
MAX_FILE_FOR_PAGE_SOURCES = 256 << 20
# A mapped file's whole content goes into the trace, up to this size; of a larger one (a
# database, a sparse 1 TiB file), only the range each mapping covers, holes unread.
MAX_WHOLE_FILE = MAX_FILE_FOR_PAGE_SOURCES
MAX_STORED_RANGE = 1 << 30
ZERO_DEVICE = E.MMAP_ZERO_DEVICE - 1    # file_mapped's answer for /dev/zero (aux = index + 1)


@dataclass
class RecordResult:
    trace_dir: str
    exit_status: int          # as the shell reports it: code, or 128 + signal
    events: int
    complete: bool
    reason: str
    checkpoints: int = 0


class STOP:
    """The processes being recorded, and the signal that ended the recording (if one did)."""
    pids: set = set()
    signum: int | None = None


def stop_recording(signum: int) -> None:
    """End the recording from another thread (rrverify record on SIGTERM/SIGHUP): the tracee
    is killed, the record loop returns with its death, and the trace ends incomplete."""
    STOP.signum = signum
    for pid in list(STOP.pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


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


class RecordedProcess:
    """One process of the recording: its native state (struct rrv_recorder, its own event
    buffer) and what the driver keeps about it."""

    def __init__(self, index: int, pid: int, state, parent: "RecordedProcess | None"):
        self.index, self.pid, self.state, self.parent = index, pid, state, parent
        self.gadget = parent.gadget if parent else 0   # a fork child runs its parent's image
        self.events = 0             # events handed to the writer
        self.last_checkpoint = -1   # the event of its latest checkpoint
        self.execs: list[str] = []
        self.status: int | None = None
        self.tracer: Tracer | None = None   # whose thread traces it (None: being handed over)
        self.recorders_child = parent is None   # its real parent is a tracer thread

    def checkpoint_taken(self, checkpoint_every: int) -> None:
        """The next periodic checkpoint counts from this one, whatever its kind."""
        self.last_checkpoint = self.events
        self.state.events = self.events     # the native counter, after events Python added
        # a buffered syscall counts as an event here: a loop of them gets checkpoints too
        clock = self.events + self.state.buffered_syscalls
        self.state.next_checkpoint_event = (clock + checkpoint_every if checkpoint_every
                                            else 2**64 - 1)
        self.state.last_checkpoint_ns = lib.rrv_now_ns()


class Recorder(CallbackTarget):
    def __init__(self, writer: TraceWriter, avoid_cpu: int | None = None):
        super().__init__()
        self.writer = writer
        self.pages = PageStoreWriter(writer.path, writer.put_blob)
        self.finisher = CheckpointFinisher(writer, self.pages, avoid_cpu)
        self.identities = exec_image.FileIdentities()
        self.file_index: dict[tuple, tuple] = {}   # (path, sha256) -> (blob, content, index)
        # (dev, inode) as /proc/PID/maps shows them -> (blob, content or None, files.jsonl index)
        self.mapped_files: dict[tuple, tuple] = {}
        self.checkpoint_seconds = 0.0
        self.unchanged = UnchangedPages()   # page names by address and content: every process

    # -- callbacks from the native loop ---------------------------------------------------
    def blob_put(self, data: bytes) -> bytes:
        return self.writer.put_blob(data)

    def file_mapped(self, pid: int, fd: int, offset: int, length: int) -> int:
        """The files.jsonl index of the file an mmap mapped from fd (at `offset`, `length`
        bytes), or ZERO_DEVICE for /dev/zero (an anonymous mapping by another name: nothing to
        store). A file over MAX_WHOLE_FILE is stored for that range only."""
        link = f"/proc/{pid}/fd/{fd}"
        before = time.time_ns()
        st = os.stat(link)
        path = os.readlink(link)
        if stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 5):
            return ZERO_DEVICE
        if not stat.S_ISREG(st.st_mode):
            raise UnsupportedError(f"unsupported mmap of {path} (not a regular file: a device "
                                   f"or special file cannot be recorded)")
        if st.st_size > MAX_WHOLE_FILE:
            if min(length, max(0, st.st_size - offset)) > MAX_STORED_RANGE:
                raise UnsupportedError(f"unsupported mmap of {length} bytes of {path}: ranges "
                                       f"over {MAX_STORED_RANGE >> 30} GiB of a file are not "
                                       f"stored yet")
            return self._store(*self.identities.identify_range(link, path, offset, length))
        return self._file_index(link, path, st, before)

    def _file_index(self, open_path: str, display_path: str, st: os.stat_result | None = None,
                    before: int | None = None) -> int:
        """Store a mapped file's content (replay never reads the recording machine's files)
        and make its pages known to the page store. st: open_path's, taken after `before`."""
        return self._store(*self.identities.identify(open_path, display_path, st, before))

    def content_digest(self, region: dict) -> str | None:
        """The SHA-256 (hex) of a mapped region's file, if the file at its path is still, by
        its times, the content the trace stores (FileIdentities.unchanged); else None."""
        f = self.mapped_files.get((region["dev"], region["inode"])) if region["inode"] else None
        if f is None or not region["path"].startswith("/"):
            return None
        digest = f[0].hex()
        return digest if self.identities.unchanged(region["path"], digest) else None

    def _store(self, ident: dict, data: bytes | FileToRead | None, where: tuple) -> int:
        key = (ident["path"], ident["sha256"], ident.get("offset", 0), ident["size"])
        if key in self.file_index:
            if isinstance(data, FileToRead):
                data.abandon(TraceError("stored before"))    # (closes its descriptor)
        else:
            blob = bytes.fromhex(ident["sha256"])
            try:
                index = self.writer.add_file(dict(ident, blob=ident["sha256"]), data)
            except BaseException:
                if isinstance(data, FileToRead):
                    data.abandon(TraceError("not queued"))
                raise
            self.file_index[key] = (blob, data if ident.get("offset") is None and
                                    len(data) <= MAX_FILE_FOR_PAGE_SOURCES else None, index)
        self.mapped_files[where] = self.file_index[key]
        return self.file_index[key][2]

    # -- the exec image and checkpoints ---------------------------------------------------
    def exec_event(self, proc: RecordedProcess) -> bytes:
        """Prepare a fresh image (vDSO patched) and describe it: registers and the files the
        kernel mapped. The checkpoint taken right after holds everything else."""
        pid = proc.pid
        proc.gadget = exec_image.patch_vdso(pid)
        if proc.state.syscallbuf_allowed:
            err = ffi.new("char[256]")
            if lib.rrv_map_syscall_page(pid, proc.gadget, err, 256) < 0:
                raise NativeError(f"pid {pid}: {ffi.string(err).decode(errors='replace')}")
        try:
            proc.execs.append(os.readlink(f"/proc/{pid}/exe"))
        except OSError:
            pass
        files = [self._file_index(p, p) for p in exec_image.mapped_file_paths(pid)]
        return E.encode(E.EXEC, regs=getregs(pid), tid=pid,
                        extra=struct.pack(f"<{len(files)}I", *files))

    def put_back_segv(self, proc: RecordedProcess, restore) -> None:
        mem = TraceeMemory(proc.pid)
        try:
            put_back_segv(proc.pid, Injector(proc.pid, proc.gadget, mem), mem, restore)
        finally:
            mem.close()

    def checkpoint(self, proc: RecordedProcess, parked_mask: int | None = None,
                   block_signals: bool = False, after_exec: bool = False) -> int | None:
        """Capture a checkpoint of proc at its next event: read now, while it is stopped, and
        written by the finisher while it runs on. block_signals: every signal is blocked for
        the capture (one arriving must not stop its injected syscalls; a child's birth, which
        cannot wait, may even have one pending), and the checkpoint holds the process's own
        mask. after_exec: right after its
        exec (capture.snapshot's). Returns None, or the process's wait status if it was
        killed from outside meanwhile (the checkpoint is then not written). Taken at a
        syscall's exit (not parked before an exit), a signal that comes from now on is handled
        as one arriving in user code, not delivered at that exit: no segment can start with a
        delivery at an exit (replay delivers those from the exit's stop only)."""
        t0 = time.monotonic()
        own_mask = None
        if block_signals:
            mask = ffi.new("uint64_t *")
            if lib.rrv_get_sigmask(proc.pid, mask) == 0 and \
                    lib.rrv_set_sigmask(proc.pid, 2**64 - 1) == 0:
                own_mask = mask[0]
        taken = []

        def capture() -> None:
            snap = snapshot(proc.pid, event=proc.events, gadget=proc.gadget,
                            unchanged=self.unchanged, parked_mask=parked_mask,
                            trap=TRAPS[proc.state.last_trap], blocked_mask=own_mask,
                            process=proc.index, actions_set=proc.state.actions_set,
                            after_exec=after_exec)
            pid = proc.pid
            if not snap.read(
                    self.mapped_files,
                    file_unchanged=lambda region, blob: self.identities.unchanged(
                        f"/proc/{pid}/map_files/{region['start']:x}-{region['end']:x}",
                        blob.hex()),
                    full=lambda memory: self._digest_held(memory, self.unchanged)):
                raise NativeError(f"pid {pid} left its stop while its checkpoint was read")
            taken.append(snap)
        try:
            status = died_meanwhile(proc.pid, capture)
        finally:
            if own_mask is not None:
                lib.rrv_set_sigmask(proc.pid, own_mask)
            self.checkpoint_seconds += time.monotonic() - t0
        if status is None:
            taken[0].files = self.writer.files
            self.finisher.submit(taken[0])
            if parked_mask is None:
                proc.state.after_syscall = 0
        return status

    def _digest_held(self, memory, unchanged: UnchangedPages) -> None:
        """A snapshot holds too much memory read (a process of gigabytes): digest it here, once
        the finisher has finished everything before it (it owns the page store meanwhile)."""
        self.finisher.drain()
        self.writer.wait_for_files(self.writer.files)   # pages.idx may name their blobs
        memory.digest_so_far(self.pages, unchanged)


# The tracer's thread lets the GIL go at every native call (the event loop, each ptrace
# request); a background thread (frames, checkpoints) that takes it then keeps it for up to
# the switch interval while the tracer, and the tracees it would resume, wait. A tenth of
# Python's 5 ms: `make -j2` recorded 7% faster.
TRACER_SWITCH_INTERVAL = 0.0005
# The recorder also collects garbage less often: what was there when recording began (the
# modules) is never scanned again, and the youngest objects are collected every 20000
# allocations rather than 700 (a checkpoint allocates thousands). About 3% of `make -j2`.
TRACER_GC_THRESHOLD = (20000, 20, 20)

DYING_SECONDS = 1.0     # how long a tracee that vanished from its stop may take to exit


def died_meanwhile(pid: int, work) -> int | None:
    """Run work() on the stopped tracee. If it fails because the tracee was killed from
    outside meanwhile, return the tracee's wait status; otherwise None (or the failure)."""
    try:
        work()
    except TraceeDied as e:
        return e.status
    except NativeError:
        # A SIGKILL takes the tracee out of its stop at once, but it exits a moment later:
        # give it that moment before calling the failure the recorder's own.
        deadline = time.monotonic() + DYING_SECONDS
        while True:
            dead, status = os.waitpid(pid, os.WNOHANG | 0x40000000)   # __WALL
            if dead:
                return status
            if time.monotonic() > deadline:
                raise
            time.sleep(0.002)
    return None


def unsupported_reason(state) -> str:
    """The one line that says what the recording could not go past."""
    what = ffi.string(state.message).decode(errors="replace")
    nr = state.stop_nr
    if state.stop_what == lib.RRV_UNSUP_FOREIGN_SYSCALL:
        abi, name = syscalls.foreign_abi(state.stop_arch, nr)
        return (f"unsupported {abi} syscall {nr & ~syscalls.X32_SYSCALL_BIT} ({name}) made at "
                f"{state.stop_addr:#x}: only x86-64 syscalls can be recorded; it was not run")
    if state.stop_what == lib.RRV_UNSUP_SHARED_MEMORY:
        return f"unsupported shared memory: {what}"
    if state.stop_what in (lib.RRV_UNSUP_SIGNAL, lib.RRV_UNSUP_HELD_SIGNAL):
        return f"unsupported signal {nr}: {what}"
    known = syscalls.TABLE.get(nr)
    if known is not None and known.why:
        what = known.why
    return f"unsupported syscall {nr} ({syscalls.name_of(nr)}): {what}"


def tracee_env(syscallbuf: bool) -> list[str]:
    """The recorded command's environment: the recorder's, with the preload added in front
    of any LD_PRELOAD of the user's when syscalls are buffered."""
    env = dict(os.environ)
    if syscallbuf:
        theirs = env.get("LD_PRELOAD", "")
        env["LD_PRELOAD"] = f"{preload.LIBRARY} {theirs}".strip()
        key, _, value = preload.ENV_MARKER.partition("=")
        env[key] = value
    return [f"{k}={v}" for k, v in env.items()]


def build_manifest(argv: list[str], exe: str, cpu: int, every: int, interval: float,
                   serialize: bool = False, tracee_cpus: str = DEFAULT_TRACEE_CPUS,
                   syscallbuf: bool = True) -> dict:
    return {
        "command": argv, "exe": exe,
        "env": tracee_env(syscallbuf),
        # Every CPU's APIC id: a process may move itself (taskset) whatever tracee_cpus says.
        "cwd": os.getcwd(), "host": host.describe(), "rlimits": current_rlimits(),
        "recorder": {"version": RECORDER_VERSION, "cpu": cpu,
                     "syscalls_known": len(syscalls.TABLE),
                     "checkpoint_every": every, "checkpoint_interval": interval,
                     "serialize": serialize, "tracee_cpus": tracee_cpus,
                     "syscallbuf": syscallbuf,
                     # which mapped file is the preload (replayer/syscallbuf_invariant.py)
                     "preload": preload.digest() if syscallbuf else None},
        "started": time.time(),
    }


class Tracer:
    """One tracer thread and its session: the processes it records, run at once on its CPU.
    A recording has one, or (tracee_cpus "spread") one per CPU, a process handed from one to
    another at its birth or an exec (rrv_session_hand_over)."""

    def __init__(self, cpu: int, serialize: bool, view: bytes, recording):
        self.cpu = cpu
        self.session = ffi.new("struct rrv_session *")
        self.session.recording = recording
        self.session.serialize = int(serialize)
        self.session.cpu_view = list(view)
        self.session.cpu_view_bytes = len(view)
        self.session.cpu = cpu
        self.procs: list[RecordedProcess] = []   # by session index (handed away ones stay)
        self.cpu_seconds = 0.0
        self.thread: threading.Thread | None = None


def record(argv: list[str], trace_dir: str, *, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
           checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL, serialize: bool = False,
           tracee_cpus: str = DEFAULT_TRACEE_CPUS, syscallbuf: bool = True) -> RecordResult:
    """tracee_cpus: "spread" gives each CPU this process may use a tracer thread of its own,
    and a process (not sharing memory) moves at its birth or an exec to the one with fewer at
    work (the default, with syscall buffering); "tracer" keeps every process on the one tracer's CPU (the
    cheapest ptrace stops, no parallelism); "all" lets them run on every CPU, stopping on
    the one tracer's (bench/multiprocess.py measures each). serialize: one process runs at a
    time, as rr does. syscallbuf: common syscalls are buffered by the preload, without a
    ptrace stop (False: rrverify record --no-syscallbuf, two stops for every syscall)."""
    if syscallbuf and not preload.available():
        raise NativeError(f"record: the preload library {preload.LIBRARY} is missing (reinstall "
                          f"rrverify, or record with --no-syscallbuf)")
    if tracee_cpus not in TRACEE_CPUS:
        raise UsageError(f"record: --tracee-cpus must be one of {', '.join(TRACEE_CPUS)}")
    exe = resolve_program(argv[0])
    cpu = choose_cpu()
    allowed = os.sched_getaffinity(0)
    # (a hand-over parks a process at the syscall page's untraced instruction: none without
    # syscall buffering; processes that all share memory never move)
    spread = tracee_cpus == "spread" and syscallbuf and not serialize and len(allowed) > 1
    os.sched_setaffinity(0, {cpu})   # the manifest's CPUID is the recording core's
    try:
        manifest = build_manifest(
            argv, exe, cpu, checkpoint_every, checkpoint_interval, serialize,
            tracee_cpus if spread or tracee_cpus != "spread" else "tracer", syscallbuf)
    finally:    # (the tracer threads pin themselves; record() may run inside a larger program)
        os.sched_setaffinity(0, allowed)
    background_cpu = -1 if spread else cpu     # (-1: none avoided)
    writer = TraceWriter(trace_dir, manifest, avoid_cpu=background_cpu)
    rec = Recorder(writer, avoid_cpu=background_cpu)
    view = sum(1 << c for c in allowed).to_bytes(128, "little")
    registry = lib.rrv_recording_new()     # every live process, whichever thread traces it
    if registry == ffi.NULL:
        raise NativeError("record: out of memory")
    registry = ffi.gc(registry, lib.rrv_recording_free)
    tracers = [Tracer(c, serialize, view, registry) for c in
               ([cpu] + sorted(allowed - {cpu})[:MAX_TRACERS - 1] if spread else [cpu])]
    procs: list[RecordedProcess] = []
    in_transit: dict[int, RecordedProcess] = {}    # handed over, not yet adopted: by pid
    lock = rec.lock     # the driver's work between native runs, and every callback
    t0 = time.monotonic()
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Orphans of the tree are re-parented to the recorder, which goes on recording them: to
    # its main thread, which waits for no process, so that each tracer thread's waits
    # (__WNOTHREAD) see only its own tracees.
    libc_prctl(PR_SET_CHILD_SUBREAPER, 1)
    outcome = {"failure": None, "reason": "", "first": None, "handed_over": 0}

    def new_state():
        state = ffi.new("struct rrv_recorder *")
        state.handle = rec.handle
        state.checkpoint_every = checkpoint_every
        state.checkpoint_interval_ns = int(checkpoint_interval * 1e9)
        state.syscallbuf_allowed = int(syscallbuf)
        # fault injection for the invariant's own test (tests/test_syscallbuf.py)
        state.test_no_unwind = int(os.environ.get("RRVERIFY_TEST_DELIVER_IN_PRELOAD") == "1")
        return state

    def add_process(tracer: Tracer, pid: int, state,
                    parent: RecordedProcess | None) -> RecordedProcess:
        row = {"pid": pid, "parent": None, "parent_event": None}
        if parent is not None:
            row.update(parent=parent.index, parent_event=int(parent.state.events),
                       clone_flags=int(tracer.session.new_flags))
        proc = RecordedProcess(writer.add_process(row), pid, state, parent)
        proc.tracer = tracer
        if parent is not None:    # a CLONE_PARENT child of one is a tracer thread's child too
            proc.recorders_child = parent.recorders_child and \
                bool(tracer.session.new_flags & CLONE_PARENT)
        procs.append(proc)
        tracer.procs.append(proc)
        STOP.pids.add(pid)
        return proc

    def drain(tracer: Tracer) -> None:
        """Every sealed event of the tracer's processes goes to its process's stream."""
        for proc in tracer.procs:
            st = proc.state
            if not st.len or proc.tracer is not tracer:  # (a field read: a call would let
                continue                                 # the other threads' GIL in)
            n = lib.rrv_record_sealed(st)
            if n:
                count = st.buffered_events
                writer.add_events(proc.index, bytes(ffi.buffer(st.buf, n)), count)
                proc.events += count
                lib.rrv_record_consumed(st, n, count)

    def exec_and_checkpoint(proc: RecordedProcess):
        exec_event = []
        status = died_meanwhile(proc.pid, lambda: exec_event.append(rec.exec_event(proc)))
        if status is not None:
            return status
        writer.add_events(proc.index, exec_event[0], 1)
        proc.events += 1
        # (an alternate stack set before keeps its SS_AUTODISARM flag: read it, injecting)
        return rec.checkpoint(proc, after_exec=not proc.state.altstack_set)

    def died(proc: RecordedProcess, wait_status: int) -> None:
        """proc was killed while the driver worked on it (only SIGKILL kills a stopped
        tracee: from outside, or from another process of the tree). Its stream ends with
        that exit, as at any other stop; the checkpoint being taken is not written."""
        lib.rrv_record_died(proc.state, wait_status)
        proc.status = wait_status
        drain(proc.tracer)

    def checkpoint_at(proc: RecordedProcess, parked_mask=None) -> None:
        """A checkpoint of proc, read with every signal blocked: one that comes meanwhile
        must not stop its injected syscalls (a child's birth, which cannot wait, may even
        have one pending)."""
        status = rec.checkpoint(proc, parked_mask, block_signals=True)
        if status is not None:
            died(proc, status)
        else:
            proc.checkpoint_taken(checkpoint_every)

    def failure(proc: RecordedProcess, what: str) -> str:
        """what, naming the process: "unsupported syscall N (name) in process PID: why" (after
        the first phrase, the first ': ' outside parentheses)."""
        depth = 0
        for i, ch in enumerate(what):
            depth += (ch == "(") - (ch == ")")
            if depth == 0 and what.startswith(": ", i):
                return f"{what[:i]} in process {proc.pid}{what[i:]}"
        return f"{what} (in process {proc.pid})"

    def patch_site(proc: RecordedProcess) -> int:
        """A bufferable syscall at a site not seen before: patched into a jump to a stub, or
        kept. Returns 0 or the stop the native recorder met doing it."""
        # the vDSO syscall checkpoints inject through stays a syscall
        found = patch.decide(proc.pid, proc.state, rec.content_digest) \
            if proc.state.patch_site != proc.gadget else []
        if not found:
            lib.rrv_record_keep_site(proc.state)
            return 0
        jumps = [ffi.from_buffer(p.jump) for _, _, p in found]      # alive through the call
        stubs = [ffi.from_buffer(p.stub) for _, _, p in found]
        return lib.rrv_record_patch_sites(
            proc.state, len(found), ffi.new("uint64_t[]", [site for site, _, _ in found]),
            ffi.new("uint64_t[]", [stub for _, stub, _ in found]),
            ffi.new("uint8_t *[]", jumps), ffi.new("uint64_t[]", [len(j) for j in jumps]),
            ffi.new("uint8_t *[]", stubs), ffi.new("uint64_t[]", [len(s) for s in stubs]))

    def place(tracer: Tracer, child: RecordedProcess) -> None:
        """A child just born, or a process that just exec'd (its checkpoint taken), moves to
        the tracer with the fewest processes at work if this one would otherwise have more
        than one more: make's jobs land on different CPUs, a compiler beside the driver that
        waits for it."""
        st = child.state
        if child.recorders_child or st.shared_member or st.in_parent_memory or \
                st.own_affinity or st.gone or child.status is not None:
            return      # (a tracer thread's own child: its waits would see it wherever it is)
        if EUID and os.stat(f"/proc/{child.pid}").st_uid != EUID:
            return      # (not dumpable, or another user's: the other thread could not seize it)
        load = {t: at_work(t) for t in tracers}
        to = min(tracers, key=load.get)
        if to is tracer or load[to] + 1 >= load[tracer]:
            return
        in_transit[child.pid] = child
        if lib.rrv_session_hand_over(tracer.session, st, to.session) < 0:
            del in_transit[child.pid]   # it stays (killed: its exit stop comes here)
            return
        child.tracer = None
        outcome["handed_over"] += 1

    def at_work(tracer: Tracer) -> int:
        """How many of the tracer's processes are not waiting in a syscall that waits (a make
        or a gcc driver in wait4 or vfork for its child): the ones that need its CPU. Another
        tracer thread's processes are read as they are: a hint."""
        n = 0
        for k, proc in enumerate(tracer.procs):
            st = proc.state
            if proc.tracer is tracer and st.index == k and not st.gone and \
                    not (st.in_syscall and st.sc_nr in WAITING_SYSCALLS):
                n += 1      # (index: a process that came back is listed twice)
        return n

    def adopted(tracer: Tracer) -> None:
        """Processes the native loop took from its inbox become this tracer's."""
        while len(tracer.procs) < tracer.session.nprocs:
            proc = in_transit.pop(int(tracer.session.procs[len(tracer.procs)].pid))
            proc.tracer = tracer
            tracer.procs.append(proc)

    def maybe_finished() -> None:
        """Once the last process of the tree is gone, every tracer thread ends."""
        if not in_transit and all(t.session.live == 0 for t in tracers):
            for t in tracers:
                lib.rrv_session_close(t.session, 0)

    def start_first(tracer: Tracer) -> RecordedProcess:
        pid = spawn(exe, argv, writer.manifest["env"], cwd=None, cpu=cpu,
                    syscallbuf=syscallbuf)
        if tracee_cpus == "all":
            os.sched_setaffinity(pid, allowed)      # its children inherit it
        STOP.pids = {pid}
        if STOP.signum is not None:     # it came before the tracee was known
            os.kill(pid, signal.SIGKILL)
        err = ffi.new("char[256]")
        if lib.rrv_run_initial_exec(pid, err, 256) < 0:
            lib.rrv_kill(pid)
            raise NativeError(f"record: {exe}: {ffi.string(err).decode(errors='replace')}")
        first_state = new_state()
        lib.rrv_record_init(first_state, pid)
        first = add_process(tracer, pid, first_state, None)
        outcome["first"] = first
        if lib.rrv_session_add(tracer.session, first_state) < 0:
            raise NativeError("record: out of memory")
        early_death = exec_and_checkpoint(first)
        if early_death is not None:
            raise NativeError(f"record: {exe} died right after its exec "
                              f"({describe_wait_status(early_death)})")
        first.checkpoint_taken(checkpoint_every)
        return first

    def handle(tracer: Tracer, stop: int) -> bool:
        """One return of the native loop, with the lock held. False: this thread is done."""
        session = tracer.session
        adopted(tracer)
        drain(tracer)
        if stop == lib.RRV_STOP_DONE:
            return False
        proc = tracer.procs[session.current]
        state = proc.state
        try:
            rec.reraise()
        except UnsupportedError as e:     # a callback met what cannot be recorded
            reason = outcome["reason"] = failure(proc, str(e))
            raise UnsupportedError(f"record: {reason}; trace left incomplete at "
                                   f"{trace_dir}") from None
        if stop == lib.RRV_STOP_PATCH_SITE:
            stop = patch_site(proc)
            drain(tracer)
            if stop == 0:
                return True
        if stop == lib.RRV_STOP_FLUSH:
            writer.cut_frame()
        elif stop == lib.RRV_STOP_ADOPTED:
            pass
        elif stop == lib.RRV_STOP_CHECKPOINT:
            if signal_pending(proc.pid) and proc.last_checkpoint >= 0:
                # a signal would interrupt the capture: next time (a birth cannot wait)
                state.next_checkpoint_event = proc.events + state.buffered_syscalls + 1
                return True
            checkpoint_at(proc)
        elif stop == lib.RRV_STOP_CHECKPOINT_AT_EXIT:
            # The final state is compared too: a checkpoint before the exit, unless one
            # was just taken at this very event (the native loop then records the exit).
            if proc.last_checkpoint == proc.events:
                return True
            rc = lib.rrv_record_park_for_exit(state)
            if rc == -2:
                died(proc, state.status)
            elif rc < 0:
                raise NativeError(f"record: cannot stop pid {proc.pid} before its exit: "
                                  f"{os.strerror(ffi.errno)}")
            else:
                checkpoint_at(proc, state.parked_mask)
        elif stop == lib.RRV_STOP_SEGV_RESTORE:
            rec.put_back_segv(proc, state.segv_restore)
        elif stop == lib.RRV_STOP_EXEC:
            lib.rrv_forget_mem()
            killed_status = exec_and_checkpoint(proc)
            if killed_status is not None:
                died(proc, killed_status)
            else:
                proc.checkpoint_taken(checkpoint_every)
                if len(tracers) > 1:     # (a build's children: vfork, then exec)
                    drain(tracer)
                    place(tracer, proc)
        elif stop == lib.RRV_STOP_NEW_PROCESS:
            child_state = new_state()
            child = add_process(tracer, session.new_pid, child_state, proc)
            rc = lib.rrv_session_adopt(session, child_state, child.pid, state)
            if rc == -1:
                raise NativeError(f"record: cannot follow process {child.pid}, a child of "
                                  f"{proc.pid}: {os.strerror(ffi.errno)}")
            if rc == -2:     # killed before it ever ran: its stream is its exit
                writer.add_events(child.index, E.encode(
                    E.EXIT, regs=E.zero_regs(), tid=child.pid, nr=child_state.status), 1)
                child.status = child_state.status
                return True
            if not child_state.awaiting_token:  # (else: it shares memory with one
                checkpoint_at(child)            # running: checkpointed once it runs)
                if len(tracers) > 1:
                    drain(tracer)
                    place(tracer, child)
        elif stop == lib.RRV_STOP_EXITED:
            proc.status = state.status
        elif stop == lib.RRV_STOP_UNSUPPORTED:
            reason = outcome["reason"] = failure(proc, unsupported_reason(state))
            raise UnsupportedError(f"record: {reason}; trace left incomplete at {trace_dir}")
        else:
            what = ffi.string(session.message).decode(errors="replace") or \
                ffi.string(state.message).decode(errors="replace")
            outcome["reason"] = f"recorder error: {failure(proc, what)}"
            raise NativeError(f"record: {failure(proc, what)}; trace left incomplete at "
                              f"{trace_dir}")
        return True

    def drive(tracer: Tracer, first: bool) -> None:
        """A tracer thread: its native loop, and the driver's work at each of its returns."""
        cpu0 = time.thread_time()
        try:
            os.sched_setaffinity(0, {tracer.cpu})
            with lock:
                if first:
                    start_first(tracer)
            while True:
                stop = lib.rrv_session_run(tracer.session)
                with lock:
                    if outcome["failure"] is not None:   # (another thread's)
                        adopted(tracer)
                        drain(tracer)
                        break
                    if not handle(tracer, stop):
                        break
                    if tracer.session.live == 0:     # (a death at any stop, an exit...)
                        maybe_finished()
        except BaseException as e:  # noqa: BLE001 -- the main thread reports it
            with lock:
                if outcome["failure"] is None:
                    outcome["failure"] = e
                for t in tracers:       # every other tracer thread ends too
                    lib.rrv_session_close(t.session, 1)
        finally:
            tracer.cpu_seconds = time.thread_time() - cpu0

    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(TRACER_SWITCH_INTERVAL)
    gc_threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*TRACER_GC_THRESHOLD)
    complete, reason, status = False, "", None
    try:
        for k, tracer in enumerate(tracers):
            tracer.thread = threading.Thread(target=drive, args=(tracer, k == 0),
                                             name=f"rrverify-tracer-{tracer.cpu}", daemon=True)
            tracer.thread.start()
        for tracer in tracers:
            while tracer.thread.is_alive():    # (a signal's handler runs meanwhile)
                tracer.thread.join(0.5)
        if outcome["failure"] is not None:
            raise outcome["failure"]
        first = outcome["first"]
        status = first.status
        complete, reason = killed(status)
    finally:
        sys.setswitchinterval(switch_interval)
        gc.set_threshold(*gc_threshold)
        gc.unfreeze()
        STOP.pids = set()
        for t in tracers:
            lib.rrv_session_close(t.session, 1)
        for t in tracers:
            if t.thread is not None:
                t.thread.join()
        for proc in procs:
            if proc.status is None and not proc.state.gone:
                lib.rrv_kill(proc.pid)
        if STOP.signum is not None and not complete:
            reason = f"the recorder received {signal.Signals(STOP.signum).name}"
        elif outcome["failure"] is not None:
            reason = outcome["reason"]      # ("" for a failure of the driver's own)
        # A failed write is the trace writer's to report (writer.close); anything else that
        # kept a checkpoint from being written ends the trace here, incomplete.
        checkpoint_failure = rec.finisher.close()
        if checkpoint_failure is not None and not isinstance(checkpoint_failure, TraceError):
            complete = False
            reason = (f"recorder error: a checkpoint could not be written "
                      f"({type(checkpoint_failure).__name__}: {checkpoint_failure})")
        elapsed = time.monotonic() - t0
        end = {"reason": reason, "wait_status": status,
               "exit_code": None if status is None else wait_status_to_exit_code(status)}
        rec.pages.close()
        writer.manifest["processes"] = [
            {"index": p.index, "pid": p.pid, "parent": p.parent.index if p.parent else None,
             "execs": p.execs, "wait_status": p.status} for p in procs]
        try:
            writer.close(complete=complete, end=end,
                         stats={"syscalls": sum(p.state.syscalls for p in procs),
                                "seconds": round(elapsed, 6),
                                "checkpoint_seconds": round(rec.checkpoint_seconds, 6),
                                "checkpoint_finish_seconds": round(rec.finisher.seconds, 6),
                                "cpu_seconds": cpu_seconds(tracers, children0, rec.finisher),
                                "stored_pages": rec.pages.stored_pages,
                                "tracer_threads": len(tracers),
                                "handed_over": outcome["handed_over"]})
        finally:    # after the writer's last file: a wrong cached digest it found is dropped
            analysis_cache.save_all()
        for proc in procs:
            lib.rrv_record_free(proc.state)
        for t in tracers:
            lib.rrv_session_free(t.session)
        # ...in one line, unless another failure is already on its way out
        if checkpoint_failure is not None and not isinstance(checkpoint_failure, TraceError) \
                and sys.exc_info()[1] in (None, checkpoint_failure):
            raise NativeError(f"record: {reason}; trace left incomplete at {trace_dir}") \
                from checkpoint_failure
    return RecordResult(trace_dir, wait_status_to_exit_code(status), writer.events, complete,
                        reason, writer.checkpoints)


def cpu_seconds(tracers: list[Tracer], children_start,
                finisher: CheckpointFinisher) -> dict:
    """Where a recording's CPU time went: the recorded processes' own (those reaped, with
    what they reaped), the tracer threads', and the checkpoint finisher's; the trace writer
    adds its frame writer's."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"processes": round(children.ru_utime + children.ru_stime -
                               children_start.ru_utime - children_start.ru_stime, 6),
            "tracer": round(sum(t.cpu_seconds for t in tracers), 6),
            "checkpoint_finisher": round(finisher.cpu_seconds, 6)}


def killed(status: int) -> tuple[bool, str]:
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return False, ("the tracee was killed by SIGKILL from outside; the trace ends "
                       "where it died")
    return True, describe_wait_status(status)


PR_SET_CHILD_SUBREAPER = 36


def libc_prctl(option: int, value: int) -> None:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
