"""Distributed verification: one Ray task per segment, aggregated into one report."""
