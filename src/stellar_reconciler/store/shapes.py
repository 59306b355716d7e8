"""Shape watch: the batch hook that records what shape each contract's events have, opens
`shape_changed` when one changes, and notes pending records whose amount became unreadable.

It runs inside the batch's transaction (and each repair's), before the expectation matcher,
so a shape, its discrepancy and the events that showed it commit together or not at all.
Each batch's shapes are worked out in memory (shapes.shape_of); the database is read only
for a (contract, name, shape) this process has not seen committed yet, which after the first
batches is almost never. A shape is a row, never replaced: a restart, a re-read or a repair
of old ledgers finds the old shape already there and opens nothing again.

Which names are watched: every name of a contract in CONTRACT_IDS or
UNEXPECTED_EVENT_CONTRACTS, and every (contract, name) an expected record names. Shapes of
all other events are recorded too (they cost as little), without a discrepancy.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Connection, bindparam, exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from stellar_reconciler.matching import Expectation, ObservedEvent, event_amount
from stellar_reconciler.models import Batch, Event
from stellar_reconciler.shapes import (
    Shape,
    amount_problem,
    shape_change_text,
    shape_from_xdr,
    shape_of,
)
from stellar_reconciler.store.bulk import chunks
from stellar_reconciler.store.claimants import IS_PENDING, pending_for
from stellar_reconciler.store.discrepancies import NewDiscrepancy, open_all
from stellar_reconciler.store.schema import event_shapes, events, expectations

log = structlog.get_logger("stellar_reconciler.shapes")

# Value types whose JSON is always an integer (or its decimal text): their amount is read.
_INTEGER_TYPES = frozenset({"u32", "i32", "u64", "i64", "u128", "i128", "u256", "i256"})
# What the name column holds (events.name is cut to the same length).
_NAME_LENGTH = 64

ShapeKey = tuple[str, str, Shape]


@dataclass(frozen=True, slots=True)
class KnownShape:
    shape: Shape
    first_ledger: int
    first_event_id: str


class ShapeWatch:
    """The batch hook (store.BatchHook): see the module's docstring."""

    def __init__(self, watched_contracts: Collection[str] = ()) -> None:
        self.watched_contracts = frozenset(watched_contracts)
        # Shapes known to be committed (read from the database), by (contract, name, digest),
        # with the first event seen in them: no query for them again unless an older event
        # shows up (a backfill). Hooks of the worker and of a repair may share it.
        self._committed: dict[tuple[str, str, str], str] = {}

    def __call__(self, conn: Connection, batch: Batch) -> None:
        firsts: dict[ShapeKey, Event] = {}
        unreadable: list[tuple[Event, Shape]] = []
        for event in batch.events:
            if not event.name:
                continue
            shape = shape_of(event)
            firsts.setdefault((event.contract_id, event.name[:_NAME_LENGTH], shape), event)
            if (
                event.in_successful_contract_call
                and shape.value not in _INTEGER_TYPES
                and event_amount(event.value) is None
            ):
                unreadable.append((event, shape))
        fresh = {}
        for (contract_id, name, shape), event in firsts.items():
            first = self._committed.get((contract_id, name, shape.digest))
            if first is None or event.id < first:
                fresh[(contract_id, name, shape)] = event
        if fresh:
            self._record(conn, fresh)
        if unreadable:
            note_unreadable(conn, unreadable)

    def _record(self, conn: Connection, fresh: dict[ShapeKey, Event]) -> None:
        groups: dict[tuple[str, str], list[tuple[Shape, Event]]] = {}
        for (contract_id, name, shape), event in fresh.items():
            groups.setdefault((contract_id, name), []).append((shape, event))
        for (contract_id, name), seen in sorted(groups.items()):
            known = self._stored(conn, contract_id, name)
            changes: list[NewDiscrepancy] = []
            for shape, event in sorted(seen, key=lambda pair: pair[1].id):
                stored = known.get(shape.digest)
                if stored is not None:
                    if event.id < stored.first_event_id:
                        # A backfill of older ledgers saw it earlier than recorded.
                        _move_first(conn, contract_id, name, shape, event)
                    continue
                if not _insert(conn, contract_id, name, shape, event):
                    continue  # another transaction recorded it meanwhile
                change = _change(contract_id, name, list(known.values()), shape, event)
                known[shape.digest] = KnownShape(shape, event.ledger, event.id)
                if change is not None:
                    changes.append(change)
            if changes and self._watched(conn, contract_id, name):
                open_all(conn, changes)
                for change in changes:
                    log.warning("shape_changed", subject=change.subject, ledger=change.first_ledger)

    def _stored(self, conn: Connection, contract_id: str, name: str) -> dict[str, KnownShape]:
        """The shapes recorded for (contract, name), by digest (the stored JSON may not keep
        the map fields' order: PostgreSQL's JSONB sorts keys)."""
        rows = conn.execute(
            select(event_shapes).where(
                event_shapes.c.contract_id == contract_id, event_shapes.c.name == name
            )
        )
        known = {}
        for row in rows:
            shape = Shape.from_json(row.shape)
            known[row.digest] = KnownShape(shape, int(row.first_ledger), row.first_event_id)
            self._committed[(contract_id, name, row.digest)] = row.first_event_id
        return known

    def _watched(self, conn: Connection, contract_id: str, name: str) -> bool:
        if contract_id in self.watched_contracts:
            return True
        named = exists().where(
            expectations.c.contract_id == contract_id, expectations.c.event_name == name
        )
        return bool(conn.execute(select(named)).scalar())


def _insert(conn: Connection, contract_id: str, name: str, shape: Shape, event: Event) -> bool:
    """Record a shape unless it is there; True when this call recorded it."""
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = (
        dialect_insert(event_shapes)
        .values(
            contract_id=contract_id,
            name=name,
            digest=shape.digest,
            shape=shape.as_json(),
            first_ledger=event.ledger,
            first_event_id=event.id,
            seen_at=datetime.now(UTC),
        )
        .on_conflict_do_nothing(index_elements=["contract_id", "name", "digest"])
        # Not rowcount: PostgreSQL's driver does not report it here.
        .returning(event_shapes.c.id)
    )
    return conn.execute(statement).first() is not None


def _move_first(conn: Connection, contract_id: str, name: str, shape: Shape, event: Event) -> None:
    conn.execute(
        update(event_shapes)
        .where(
            event_shapes.c.contract_id == contract_id,
            event_shapes.c.name == name,
            event_shapes.c.digest == shape.digest,
            event_shapes.c.first_event_id > event.id,
        )
        .values(first_ledger=event.ledger, first_event_id=event.id)
    )


def _change(
    contract_id: str, name: str, known: Sequence[KnownShape], new: Shape, event: Event
) -> NewDiscrepancy | None:
    """The change a newly seen shape makes: from the shape last seen before it (or, when it
    is older than every known one, from it to the earliest known); None for a first shape."""
    before = [k for k in known if k.first_event_id < event.id]
    if before:
        old = max(before, key=lambda k: k.first_event_id)
        return shape_changed(contract_id, name, old.shape, new, event.ledger, event.id)
    after = [k for k in known if k.first_event_id > event.id]
    if after:
        later = min(after, key=lambda k: k.first_event_id)
        return shape_changed(
            contract_id, name, new, later.shape, later.first_ledger, later.first_event_id
        )
    return None


def shape_changed(
    contract_id: str, name: str, old: Shape, new: Shape, ledger: int, event_id: str
) -> NewDiscrepancy:
    return NewDiscrepancy(
        kind="shape_changed",
        key=f"shape_changed:{contract_id}:{name}:{old.digest[:16]}:{new.digest[:16]}",
        subject=f"{contract_id}:{name}",
        first_ledger=ledger,
        message=shape_change_text(contract_id, name, old, new, ledger),
        expected={"contract_id": contract_id, "event_name": name, "shape": old.as_json()},
        found={
            "contract_id": contract_id,
            "event_name": name,
            "shape": new.as_json(),
            "first_ledger": ledger,
            "first_event_id": event_id,
        },
    )


def note_unreadable(conn: Connection, unreadable: Sequence[tuple[Event, Shape]]) -> None:
    """Note on each pending record with an amount the first of these events that fits it in
    all but a readable amount, and why the amount cannot be read (store/unreadable.py)."""
    waiting = {
        (contract_id, name)
        for contract_id, name in conn.execute(
            select(expectations.c.contract_id, expectations.c.event_name)
            .where(
                IS_PENDING,
                expectations.c.amount.is_not(None),
                # Noted once is enough: after an upgrade every batch brings more such events.
                expectations.c.unreadable_event_id.is_(None),
            )
            .distinct()
        )
    }
    relevant = [(e, s) for e, s in unreadable if (e.contract_id, e.name) in waiting]
    if not relevant:
        return
    observed = [(ObservedEvent.of(e), e, s) for e, s in relevant]
    notes: list[dict[str, Any]] = []
    for record in pending_for(conn, [o for o, _, _ in observed]):
        if record.amount is None:
            continue
        loose = replace(record, amount=None)
        for seen, event, shape in observed:
            if loose.fits(seen):
                notes.append(_note(record.id, event.id, amount_problem(event.value, shape)))
                break
    _write_notes(conn, notes)


def note_unreadable_stored(
    conn: Connection, records: Iterable[Expectation], candidates: Iterable[ObservedEvent]
) -> None:
    """The look-back's share: records posted after a stored event that fits them in all but
    a readable amount (`candidates`: the unclaimed events the look-back considered)."""
    unreadable = sorted((e for e in candidates if e.amount is None), key=lambda e: e.id)
    if not unreadable:
        return
    picks: dict[int, str] = {}
    for record in records:
        if record.amount is None:
            continue
        loose = replace(record, amount=None)
        found = next((e.id for e in unreadable if loose.fits(e)), None)
        if found is not None:
            picks[record.id] = found
    if not picks:
        return
    rows = {
        row.id: row
        for chunk in chunks(sorted(set(picks.values())))
        for row in conn.execute(
            select(events.c.id, events.c.topics_xdr, events.c.value_xdr, events.c.value).where(
                events.c.id.in_(chunk)
            )
        )
    }
    notes = []
    for record_id, event_id in picks.items():
        row = rows[event_id]
        shape = shape_from_xdr(row.topics_xdr, row.value_xdr)
        notes.append(_note(record_id, event_id, amount_problem(row.value, shape)))
    _write_notes(conn, notes)


def _note(record_id: int, event_id: str, reason: str | None) -> dict[str, Any]:
    text = reason or "the event carries no amount"
    return {"b_id": record_id, "b_event": event_id, "b_reason": text[:400]}


def _write_notes(conn: Connection, notes: Sequence[dict[str, Any]]) -> None:
    if not notes:
        return
    conn.execute(
        update(expectations)
        .where(
            expectations.c.id == bindparam("b_id"),
            expectations.c.unreadable_event_id.is_(None),
        )
        .values(
            unreadable_event_id=bindparam("b_event"),
            unreadable_reason=bindparam("b_reason"),
        ),
        notes,
    )
