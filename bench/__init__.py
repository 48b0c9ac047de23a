"""Benchmarks: each prints its ratios measured side by side in one run (see run_all.py and targets.py)."""
