"""The failure classes the command line turns into one line and an exit code."""


class RRVerifyError(Exception):
    """Base: a problem the user must act on. str(e) is the one line they see."""
    exit_code = 2


class TraceError(RRVerifyError):
    """The trace is missing, truncated, corrupted, or of a format this rrverify cannot read."""


class UsageError(RRVerifyError):
    """The command line or environment cannot work (no such program, bad option value)."""


class UnsupportedError(RRVerifyError):
    """The tracee did something rrverify cannot record yet."""


class NativeError(RRVerifyError):
    """ptrace or the kernel refused something the native core needed."""


class TraceeDied(NativeError):
    """The tracee died (killed from outside) while we were working on it."""

    def __init__(self, pid: int, status: int):
        super().__init__(f"pid {pid} died (wait status {status:#x})")
        self.status = status


class InjectionRefused(TraceError):
    """A syscall the verifier injected arrived at its stop as another one (the code at the
    injection site was not ours): it was not run, and the trace is not trusted further."""
