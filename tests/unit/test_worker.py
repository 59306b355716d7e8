"""Worker pieces that need no network: batch sizing."""

from __future__ import annotations

from stellar_reconciler.worker import BatchSizer


def test_sizer_targets_events_per_batch_within_bounds() -> None:
    """Batches span about target/rate ledgers, between 1 and the configured maximum."""
    sizer = BatchSizer(max_ledgers=1000, target_events=10000)
    assert sizer.next_size() == 10
    sizer.observe(10, 0)
    assert sizer.next_size() == 1000
    dense = BatchSizer(max_ledgers=1000, target_events=10000)
    dense.observe(10, 10000)
    assert dense.next_size() == 10


def test_sizer_halves_after_failure_and_recovers() -> None:
    """A failed range halves the next batch; successes double it back to the maximum."""
    sizer = BatchSizer(max_ledgers=64, target_events=10000)
    sizer.observe(10, 0)
    sizer.shrink(64)
    assert sizer.next_size() == 32
    sizer.shrink(2)
    assert sizer.next_size() == 1
    for _ in range(7):
        sizer.observe(1, 0)
    assert sizer.next_size() == 64
