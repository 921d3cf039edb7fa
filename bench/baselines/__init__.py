"""Baselines: the same workload as a team would build it without Interlink."""
