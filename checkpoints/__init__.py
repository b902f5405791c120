"""Checkpoints: a task's whole state, captured during recording into the trace's page store and
restored into a fresh process on any machine, from what the trace holds alone."""
