"""Finishing checkpoints off the tracer's CPU.

A checkpoint has two halves (checkpoints/capture.py): reading the stopped tracee (snapshot and
Snapshot.read), which it must wait for, and digesting, storing and indexing what was read
(finish), which needs no tracee. The recorder pins tracer and tracees to one CPU (the cheapest
ptrace stops), so the second half runs here, on a thread kept off that CPU, while the tracee
goes on: in a build, hashing and compressing the pages of every compiler's final checkpoint
was most of the recorder's own time. SHA-256 (a run of pages in one native call) and zstd
release the GIL, so the work really runs in parallel.

Snapshots are finished one at a time, in the order they were taken: checkpoint ids, the page
store's index and each process's unchanged-page cache advance as if taken synchronously.
(Mapped files are written by the trace writer's thread, before any frame queued after them;
a checkpoint waits for the files it may name: a recorder killed midway leaves no event or
checkpoint naming a file it did not store.) The bytes read and
not yet finished are bounded: a snapshot that would exceed the bound waits for room; one
snapshot holds at most capture.MAX_HELD_BYTES, past which the recorder drains this queue and
digests what it holds itself (Recorder._digest_held)."""
from __future__ import annotations

import collections
import threading
import time

from ..tracee import keep_off_cpu
from .capture import Snapshot, finish

MAX_PENDING_BYTES = 512 << 20


class CheckpointFinisher:
    def __init__(self, writer, pages, avoid_cpu: int | None = None,
                 max_pending_bytes: int = MAX_PENDING_BYTES):
        self.writer, self.pages = writer, pages
        self.max_pending_bytes = max_pending_bytes
        self.seconds = 0.0          # spent working, on the background thread
        self.cpu_seconds = 0.0      # the background thread's CPU time, once it has ended
        self._queue: collections.deque[Snapshot | None] = collections.deque()   # None: stop
        self._pending_bytes = 0
        self._busy = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, args=(avoid_cpu,),
                                        name="rrverify-checkpoint-finisher", daemon=True)
        self._thread.start()

    def submit(self, snap: Snapshot) -> None:
        """Queue a snapshot to finish; raises what made an earlier one fail."""
        with self._cond:
            while (self._error is None and self._pending_bytes and
                   self._pending_bytes + snap.bytes > self.max_pending_bytes):
                self._cond.wait()
            self._raise_failure()
            self._queue.append(snap)
            self._pending_bytes += snap.bytes
            self._cond.notify_all()

    def drain(self) -> None:
        """Wait until every snapshot queued is a written checkpoint; raises as submit."""
        with self._cond:
            while self._error is None and (self._queue or self._busy):
                self._cond.wait()
            self._raise_failure()

    def close(self) -> BaseException | None:
        """Finish what is queued and stop the thread. Returns the failure, if any, rather than
        raising it: the recorder closes the trace first, which then says why it ends."""
        with self._cond:
            self._queue.append(None)
            self._cond.notify_all()
        self._thread.join()
        return self._error

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self, avoid_cpu: int | None) -> None:
        if avoid_cpu is not None:
            keep_off_cpu(avoid_cpu)
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                snap = self._queue.popleft()
                if snap is None:
                    self.cpu_seconds = time.thread_time()
                    return
                self._busy = True
            size = snap.bytes           # as counted at submit
            t0 = time.monotonic()
            try:
                if self._error is None:     # after a failure, no checkpoint may name its pages
                    finish(snap, self.writer, self.pages)
            except BaseException as e:      # handed to the recorder's thread, which raises it
                self._error = e
            finally:
                self.seconds += time.monotonic() - t0
                with self._cond:
                    self._busy = False
                    self._pending_bytes -= size
                    self._cond.notify_all()
