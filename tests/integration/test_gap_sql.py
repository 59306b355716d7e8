"""The store's SQL gap query agrees with the reference definition, on both databases."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert

from stellar_reconciler.reconcile import gaps_in
from stellar_reconciler.store import Store
from stellar_reconciler.store.schema import ledgers
from tests.factories import make_batch


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
