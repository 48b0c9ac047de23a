"""The closed-loop demo: a BFCL tool-calling workload through the real stack, end to end."""
