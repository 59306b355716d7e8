"""Throughput and latency benchmarks of stellar-reconciler against the simulated network.

`make bench` (or `python -m bench.run --help`) runs them all and prints one table; see
docs/benchmarks.md for what each number means and a recorded run.
"""
