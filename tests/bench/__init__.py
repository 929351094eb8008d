"""Benchmarks: scripts that print figures and ratios (python -m tests.bench), never timed asserts."""
