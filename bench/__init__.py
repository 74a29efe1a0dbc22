"""Benchmarks: each scenario measures tiketi against a baseline in the same run."""
