"""The replayer: re-executes a trace's program, injecting what was recorded and checking every
event (docs/checks.md)."""
