"""Store repairs on SQLite and PostgreSQL: replace a range, fill a gap a batch at a time."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete

from stellar_reconciler.errors import CheckpointConflictError
from stellar_reconciler.models import Batch
from stellar_reconciler.store import NewDiscrepancy, Store
from stellar_reconciler.store.schema import events, ledgers
from tests.factories import make_batch


def stored(store: Store) -> list[tuple[int, int]]:
    """(sequence, event count) of every stored ledger."""
    return [(r.sequence, r.event_count) for r in store.list_ledgers(None, None, 1000)]


def punch(store: Store, first: int, last: int) -> None:
    with store.engine.begin() as conn:
        conn.execute(delete(events).where(events.c.ledger.between(first, last)))
        conn.execute(delete(ledgers).where(ledgers.c.sequence.between(first, last)))


def gap_records(store: Store) -> list[dict[str, Any]]:
    return store.discrepancies.listing(kind="gap")


@pytest.fixture
def filled(store: Store) -> Store:
    """A store holding ledgers 10-39, two events each, with ledgers 15-29 punched out."""
    store.ensure_stream(10, "fp")
    store.commit_batch(make_batch(10, 39, events_per_ledger=2))
    punch(store, 15, 29)
    return store


def test_a_gap_filled_batch_by_batch_keeps_its_record_up_to_date(filled: Store) -> None:
    """Each batch of a gap commits on its own: after the first, its ledgers are stored and the
    gap record is open with how far it got; after the last, the record is resolved."""
    filled.fill_gap((15, 29), make_batch(15, 19, events_per_ledger=2), events=10)
    assert [s for s, _ in stored(filled)] == [*range(10, 20), *range(30, 40)]
    [record] = gap_records(filled)
    assert record["open"] is True and record["found"] == {"filled_through": 19}
    assert (record["first_ledger"], record["last_ledger"]) == (15, 29)
    filled.fill_gap((15, 29), make_batch(20, 29, events_per_ledger=2), events=30)
    assert stored(filled) == [(s, 2) for s in range(10, 40)]
    assert filled.event_count() == 60
    [record] = gap_records(filled)
    assert record["open"] is False and record["resolved_by"] == "auto"
    assert "15-29" in record["resolution"] and "30 events" in record["resolution"]


def test_a_fill_stopped_half_way_is_finished_under_the_same_record(filled: Store) -> None:
    """A fill that stopped after its first batch leaves a smaller gap; filling that closes the
    first record instead of leaving it open beside a second one."""
    filled.fill_gap((15, 29), make_batch(15, 19, events_per_ledger=2), events=10)
    assert filled.gaps.find() == [(20, 29)]
    filled.fill_gap((20, 29), make_batch(20, 29, events_per_ledger=2), events=20)
    [record] = gap_records(filled)
    assert record["open"] is False and record["first_ledger"] == 15
    assert filled.gaps.find() == []


def test_repairs_never_write_past_the_checkpoint(filled: Store) -> None:
    """Replacing or filling ledgers the worker has not reached yet is refused, nothing written."""
    with pytest.raises(CheckpointConflictError):
        filled.fill_gap((38, 41), make_batch(38, 41), events=4)
    with pytest.raises(CheckpointConflictError):
        filled.replace_range(make_batch(39, 40))
    assert filled.checkpoint().ledger == 39
    assert gap_records(filled) == []
    assert stored(filled)[-1] == (39, 2)


def test_replace_range_runs_hooks_and_records_why_in_the_same_transaction(filled: Store) -> None:
    """A replaced range holds exactly the new rows, its hooks saw the batch and its discrepancy
    is open; a failing hook rolls the rows and the discrepancy back with it."""
    seen: list[Batch] = []
    why = NewDiscrepancy(kind="source_mismatch", key="source_mismatch:30-34", message="differed")
    filled.replace_range(
        make_batch(30, 34, events_per_ledger=1), [lambda _, b: seen.append(b)], why
    )
    assert [b.first_ledger for b in seen] == [30]
    assert [c for s, c in stored(filled) if 30 <= s <= 34] == [1] * 5
    assert filled.discrepancies.open_counts()["source_mismatch"] == 1

    def failing(_: object, __: Batch) -> None:
        raise RuntimeError("hook failed")

    other = NewDiscrepancy(kind="source_mismatch", key="source_mismatch:35-39", message="x")
    with pytest.raises(RuntimeError, match="hook failed"):
        filled.replace_range(make_batch(35, 39, events_per_ledger=3), [failing], other)
    assert [c for s, c in stored(filled) if 35 <= s <= 39] == [2] * 5
    assert filled.discrepancies.open_counts()["source_mismatch"] == 1


def test_a_gap_filled_meanwhile_is_not_recorded_twice(filled: Store) -> None:
    """Two repairs meeting on one gap: the second finds its ledgers stored and writes nothing,
    so the gap has one record, resolved."""
    filled.fill_gap((15, 29), make_batch(15, 29, events_per_ledger=2), events=30)
    filled.fill_gap((15, 29), make_batch(15, 29, events_per_ledger=5), events=75)
    [record] = gap_records(filled)
    assert record["open"] is False
    assert stored(filled) == [(s, 2) for s in range(10, 40)]


def test_missing_runs_include_the_ends_of_the_range(filled: Store) -> None:
    """Stored 10-14 and 30-39: 1-50 misses 1-9, 15-29 and 40-50; a range stored whole misses
    nothing; a range with nothing stored misses itself."""
    assert filled.gaps.missing(1, 50) == [(1, 9), (15, 29), (40, 50)]
    assert filled.gaps.missing(16, 20) == [(16, 20)]
    assert filled.gaps.missing(30, 39) == []
    assert filled.gaps.missing(12, 31) == [(15, 29)]


def test_backfill_batch_writes_only_ledgers_that_are_missing(filled: Store) -> None:
    """A missing batch is written with its events; one that meets a stored ledger is not
    written at all (False), and past the checkpoint nothing is written either."""
    assert filled.backfill_batch(make_batch(15, 19, events_per_ledger=3)) is True
    assert stored(filled)[5:10] == [(s, 3) for s in range(15, 20)]
    assert filled.backfill_batch(make_batch(18, 22, events_per_ledger=1)) is False
    assert [s for s, _ in stored(filled)] == [*range(10, 20), *range(30, 40)]
    with pytest.raises(CheckpointConflictError):
        filled.backfill_batch(make_batch(40, 41))
    assert gap_records(filled) == []


def test_a_retention_gap_is_resolved_only_once_all_its_ledgers_are_stored(filled: Store) -> None:
    """An open retention_gap over 15-29 stays open while 20-29 are missing, and is resolved
    naming the source once they are stored."""
    filled.gaps.report_retention_gap(15, 29, "lost")
    filled.backfill_batch(make_batch(15, 19))
    assert filled.gaps.resolve_filled("the lake") == []
    filled.backfill_batch(make_batch(20, 29))
    assert filled.gaps.resolve_filled("the lake") == [(15, 29)]
    [gap] = filled.discrepancies.listing(kind="retention_gap")
    assert gap["open"] is False and gap["resolution"].startswith("filled from the lake: ")
    assert filled.gaps.resolve_filled("the lake") == []
