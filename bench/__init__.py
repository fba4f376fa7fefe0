"""Benchmarks (never timed tests): see bench/run_all.py."""
