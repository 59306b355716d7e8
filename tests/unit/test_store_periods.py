"""Periods on SQLite and PostgreSQL: a proof's material, closing, and repairs inside one."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import delete, select

from stellar_reconciler.errors import ProofRangeError
from stellar_reconciler.merkle import events_root, headers_root
from stellar_reconciler.models import Batch
from stellar_reconciler.store import Store
from stellar_reconciler.store.schema import events, ledgers
from tests.factories import make_batch


@pytest.fixture
def filled(store: Store) -> Store:
    """A store holding ledgers 10-39, two events each."""
    store.ensure_stream(10, "fp")
    store.commit_batch(make_batch(10, 39, events_per_ledger=2))
    return store


def changed_value(batch: Batch, ledger: int) -> Batch:
    """The batch with the first event of `ledger` carrying another value."""
    events = tuple(
        e._replace(value_xdr="AAAACgAAAAAAAAAAAAAAAAAAAAE=")
        if e.ledger == ledger and e.id.endswith("0")
        else e
        for e in batch.events
    )
    return replace(batch, events=events)


def changed_records(store: Store) -> list[dict[str, Any]]:
    return store.discrepancies.listing(kind="closed_period_changed")


def test_material_is_the_stored_range_in_order(filled: Store) -> None:
    """Headers in sequence order, events in id order with the leaf fields only."""
    material = filled.periods.material(12, 14)
    assert [h["sequence"] for h in material.headers] == [12, 13, 14]
    assert material.headers[1]["previous_hash"] == material.headers[0]["hash"]
    assert material.headers[0]["closed_at"].endswith("Z")
    with filled.engine.connect() as conn:
        ids = conn.execute(
            select(events.c.id).where(events.c.ledger.between(12, 14)).order_by(events.c.id)
        ).scalars()
        assert [e["id"] for e in material.events] == list(ids)
    assert set(material.events[0]) == {
        "id",
        "ledger",
        "contract_id",
        "type",
        "tx_hash",
        "topics_xdr",
        "value_xdr",
    }
    assert material.filter_fingerprint == "fp" and material.period is None


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        (20, 19, "the range 20-19 is empty"),
        (30, 45, "ledger 45 is not indexed yet (indexed through 39)"),
        (5, 12, "ledger 5 is not stored"),
        (20, 30, "ledger 25 is not stored"),
    ],
)
def test_a_range_not_wholly_indexed_is_refused(
    filled: Store, first: int, last: int, message: str
) -> None:
    """Reversed, beyond the checkpoint, before the first ledger or across a gap: refused."""
    with filled.engine.begin() as conn:
        conn.execute(delete(ledgers).where(ledgers.c.sequence == 25))
    with pytest.raises(ProofRangeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        filled.periods.material(first, last)


def test_closing_records_the_roots_once(filled: Store) -> None:
    """Close records the Merkle roots of what is stored; closing again changes nothing."""
    period, newly = filled.periods.close(20, 29, "tester")
    material = filled.periods.material(20, 29)
    assert newly and period["event_count"] == 20
    assert period["events_root"] == events_root(material.events)
    assert period["headers_root"] == headers_root(material.headers)
    again, newly_again = filled.periods.close(20, 29, "someone else")
    assert not newly_again and again == period
    assert filled.periods.material(20, 29).period == period
    assert filled.periods.listing() == [period]


def test_a_repair_inside_a_closed_period_opens_a_discrepancy(filled: Store) -> None:
    """A replace_range that changes an event of a closed period opens closed_period_changed,
    naming the period and its old and new events root; a repair back resolves it."""
    period, _ = filled.periods.close(20, 29, "tester")
    filled.replace_range(changed_value(make_batch(24, 26, events_per_ledger=2), 25))
    [record] = changed_records(filled)
    new_root = events_root(filled.periods.material(20, 29).events)
    assert record["open"] and (record["first_ledger"], record["last_ledger"]) == (20, 29)
    assert record["subject"] == f"period {period['id']}"
    assert record["expected"]["events_root"] == period["events_root"] != new_root
    assert record["found"]["events_root"] == new_root
    assert period["events_root"] in record["message"] and new_root in record["message"]
    assert "headers_root" not in record["message"]
    filled.replace_range(make_batch(24, 26, events_per_ledger=2))
    [record] = changed_records(filled)
    assert not record["open"] and record["resolved_by"] == "auto"


def test_a_gap_filled_inside_a_closed_period_with_other_events_is_recorded(filled: Store) -> None:
    """fill_gap is a repair too: other events than those closed over open the discrepancy."""
    filled.periods.close(20, 29, "tester")
    with filled.engine.begin() as conn:
        conn.execute(delete(ledgers).where(ledgers.c.sequence.between(22, 23)))
    filled.fill_gap((22, 23), make_batch(22, 23, events_per_ledger=1), events=2)
    [record] = changed_records(filled)
    assert record["found"]["event_count"] == 18 and record["expected"]["event_count"] == 20


def test_an_identical_repair_or_one_outside_opens_nothing(filled: Store) -> None:
    """Re-writing a closed period's rows unchanged, or changing ledgers outside it, is silent."""
    filled.periods.close(20, 29, "tester")
    filled.replace_range(make_batch(20, 29, events_per_ledger=2))
    filled.replace_range(changed_value(make_batch(30, 32, events_per_ledger=2), 31))
    assert changed_records(filled) == []
