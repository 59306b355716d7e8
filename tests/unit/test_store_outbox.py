"""The publish outbox (SQLite and PostgreSQL): queued with the batch, in order, gone once sent."""

from __future__ import annotations

import dataclasses
import json

import pytest
from sqlalchemy import delete

from stellar_reconciler.errors import CheckpointConflictError
from stellar_reconciler.models import Batch
from stellar_reconciler.store import EventQuery, Store
from stellar_reconciler.store.schema import events, ledgers
from tests.factories import make_batch


@pytest.fixture
def publishing(store: Store) -> Store:
    store.outbox.enabled = True
    store.ensure_stream(10, "fp")
    return store


def queued_refs(store: Store) -> list[str]:
    return [item.ref for item in store.outbox.pending(10_000)]


def test_nothing_is_queued_while_publishing_is_off(store: Store) -> None:
    """Without NATS_URL a batch queues nothing, or the outbox would only grow."""
    store.ensure_stream(10, "fp")
    store.commit_batch(make_batch(10, 12, events_per_ledger=2))
    assert store.outbox.pending_count() == 0


def test_a_batch_queues_its_events_in_order_with_their_bodies(publishing: Store) -> None:
    """Every event of a committed batch is queued, in id order, with the API's JSON body."""
    batch = make_batch(10, 14, events_per_ledger=3)
    publishing.commit_batch(batch)
    items = publishing.outbox.pending(100)
    assert [item.ref for item in items] == [event.id for event in batch.events]
    assert [item.seq for item in items] == sorted(item.seq for item in items)
    first = items[0]
    assert first.kind == "event"
    assert first.body is not None
    body = json.loads(first.body)
    assert body["id"] == batch.events[0].id
    assert body["contract_id"] == first.contract_id == batch.events[0].contract_id
    assert body["name"] == first.name == "transfer"


def test_queued_bodies_are_the_api_documents_whatever_the_fields_hold(
    publishing: Store,
) -> None:
    """The body the database makes equals what /api/events shows for the same event: names
    with quotes, control characters and letters outside ASCII, no name, no value, nested
    values, and close times with and without a fraction of a second."""
    batch = make_batch(10, 13, events_per_ledger=2)
    odd = [
        batch.events[0]._replace(name='say "hi"\n\t\x01', topics=('say "hi"',)),
        batch.events[1]._replace(name="G\u00e9\u4e2d\U0001f600", value=None),
        batch.events[2]._replace(name=None, value={"to": "G\u00e9", "amount": [1, {"a": None}]}),
        batch.events[3]._replace(
            ledger_closed_at=batch.events[3].ledger_closed_at.replace(microsecond=120)
        ),
    ]
    publishing.commit_batch(dataclasses.replace(batch, events=(*odd, *batch.events[4:])))
    items = publishing.outbox.pending(100)
    shown = publishing.list_events(EventQuery(limit=100))
    assert all(item.body is not None for item in items)
    assert [json.loads(item.body or b"") for item in items] == shown
    assert [(item.contract_id, item.name) for item in items] == [
        (event["contract_id"], event["name"]) for event in shown
    ]


def test_a_batch_that_fails_queues_nothing(publishing: Store) -> None:
    """The queue shares the batch's transaction: a refused batch leaves no queued event."""
    publishing.commit_batch(make_batch(10, 11))
    with pytest.raises(CheckpointConflictError):
        publishing.commit_batch(make_batch(20, 21))
    assert queued_refs(publishing) == [e.id for e in make_batch(10, 11).events]


def test_sent_messages_leave_the_queue(publishing: Store) -> None:
    """mark_sent forgets exactly the acknowledged messages; the rest keep their order."""
    publishing.commit_batch(make_batch(10, 15))
    items = publishing.outbox.pending(100)
    publishing.outbox.mark_sent([items[0].seq, items[1].seq])
    assert queued_refs(publishing) == [item.ref for item in items[2:]]
    assert publishing.outbox.pending(2) == items[2:4]
    assert publishing.outbox.pending_count() == 4


def test_a_repair_queues_only_events_not_stored_before(publishing: Store) -> None:
    """Re-indexing a range queues the events it adds, not those already stored (and sent)."""
    first = make_batch(10, 19, events_per_ledger=1)
    publishing.commit_batch(first)
    publishing.outbox.mark_sent([item.seq for item in publishing.outbox.pending(100)])
    with publishing.engine.begin() as conn:
        conn.execute(delete(events).where(events.c.ledger.between(12, 13)))
    kept = {e.id for e in first.events if e.ledger not in (12, 13)}
    wider = make_batch(10, 19, events_per_ledger=2)
    publishing.replace_range(wider)
    assert queued_refs(publishing) == [e.id for e in wider.events if e.id not in kept]
    assert len(queued_refs(publishing)) == 12


def test_a_filled_gap_queues_its_events(publishing: Store) -> None:
    """A gap's ledgers, filled from the RPC, are queued like a batch's."""
    publishing.commit_batch(make_batch(10, 19))
    publishing.outbox.mark_sent([item.seq for item in publishing.outbox.pending(100)])
    with publishing.engine.begin() as conn:
        conn.execute(delete(events).where(events.c.ledger.between(14, 15)))
        conn.execute(delete(ledgers).where(ledgers.c.sequence.between(14, 15)))
    fill: Batch = make_batch(14, 15)
    publishing.fill_gap((14, 15), fill, events=2)
    assert queued_refs(publishing) == [e.id for e in fill.events]


def test_an_event_replaced_since_it_was_queued_has_no_body(publishing: Store) -> None:
    """A queued event deleted by a later repair comes back without a body (nothing to send)."""
    publishing.commit_batch(make_batch(10, 11))
    with publishing.engine.begin() as conn:
        conn.execute(delete(events).where(events.c.ledger == 11))
    bodies = {item.ref: item.body for item in publishing.outbox.pending(10)}
    [gone] = [e.id for e in make_batch(10, 11).events if e.ledger == 11]
    assert bodies[gone] is None
    assert all(body is not None for ref, body in bodies.items() if ref != gone)
