"""Tuning of CPython's cyclic garbage collector for a process that catches up."""

from __future__ import annotations

import gc


def tune_garbage_collector(young_threshold: int = 10_000) -> None:
    """Keep the cyclic collector from eating a catch-up (measured: a quarter of its CPU).

    Each batch keeps hundreds of thousands of fresh containers alive, so the default
    threshold of 700 allocations ran a full collection every other batch, each one walking
    every object start-up imported too. Freezing moves those start-up objects out of the
    collector's sight; a higher first threshold makes young collections rarer without letting
    memory grow past the budget in docs/benchmarks.md. Call it once start-up is done.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, 10, 10)
