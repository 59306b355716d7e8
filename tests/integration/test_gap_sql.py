"""The store's SQL gap query agrees with the reference definition, on both databases."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert

from stellar_reconciler.store import Store
from stellar_reconciler.store.schema import ledgers
from tests.factories import make_batch


def gaps_in(sequences: Iterable[int]) -> list[tuple[int, int]]:
    """Missing runs between the smallest and largest of `sequences`: the reference the SQL
    gap query is held to."""
    present = sorted(set(sequences))
    return [(a + 1, b - 1) for a, b in itertools.pairwise(present) if b > a + 1]


@given(st.sets(st.integers(min_value=1, max_value=400), min_size=1, max_size=120))
def test_reference_gaps_are_exactly_the_missing_numbers(present: set[int]) -> None:
    """The reference returns every missing number between the smallest and largest, in
    separate, ordered runs."""
    gaps = gaps_in(present)
    expected = set(range(min(present), max(present) + 1)) - present
    assert {n for a, b in gaps for n in range(a, b + 1)} == expected
    assert all(a <= b for a, b in gaps)
    assert all(b1 + 1 < a2 for (_, b1), (a2, _) in itertools.pairwise(gaps))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sets(st.integers(min_value=1, max_value=300), min_size=1, max_size=150))
def test_sql_gaps_match_reference(store: Store, present: set[int]) -> None:
    """For any set of stored ledger sequences, SQL finds exactly the missing runs."""
    rows = [
        {
            "sequence": r.sequence,
            "hash": r.hash,
            "previous_hash": r.previous_hash,
            "closed_at": r.closed_at,
            "event_count": 0,
        }
        for r in make_batch(1, 300, 0).ledgers
        if r.sequence in present
    ]
    with store.engine.begin() as conn:
        conn.execute(delete(ledgers))
        conn.execute(insert(ledgers), rows)
    assert store.gaps.find() == gaps_in(present)
