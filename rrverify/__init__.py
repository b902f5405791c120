"""rrverify: record a Linux x86-64 program once, without hardware performance counters, and
prove that the recording replays faithfully."""

__version__ = "0.1.0"
