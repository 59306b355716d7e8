"""Candidates: the stored events a pending record may yet settle on, as matching sees them.

A pending record shows its closest fitting event so far (`note_candidates`); at its deadline
it settles on it as an amount mismatch unless another record took it meanwhile, and then on
the closest one still free (`closest_stored`), so a record never turns missing while a
fitting event sits unclaimed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, and_, bindparam, select, update

from stellar_reconciler.assignment import closest_of
from stellar_reconciler.matching import Claim, Expectation, ObservedEvent
from stellar_reconciler.store.bulk import chunks
from stellar_reconciler.store.findings import text_of
from stellar_reconciler.store.schema import events, expectation_parts, expectations

# Records without a transaction hash look back this many ledgers (about a day) for an event
# stored before them; with a hash, any stored event up to the deadline is found (indexed).
LOOKBACK_LEDGERS = 17_280
# Stored events no record holds, neither alone nor as a part of a sum.
UNCLAIMED = (
    select(events)
    .outerjoin(expectations, expectations.c.event_id == events.c.id)
    .outerjoin(expectation_parts, expectation_parts.c.event_id == events.c.id)
    .where(
        and_(
            expectations.c.id.is_(None),
            expectation_parts.c.event_id.is_(None),
            events.c.in_successful_contract_call,
        )
    )
)


def first_event_id(ledger: int) -> str:
    """A bound below every event id of `ledger`: ids start with the ledger's TOID
    (ledger << 32), zero-padded to 19 digits, so text order is ledger order."""
    return f"{ledger << 32:019d}"


def observed_events(rows: Iterable[Any]) -> Iterator[ObservedEvent]:
    """Stored events rows as matching sees them."""
    for row in rows:
        yield ObservedEvent.from_parts(
            row.id,
            row.ledger,
            row.contract_id,
            row.name,
            row.tx_hash,
            row.topics,
            row.value,
            row.in_successful_contract_call,
        )


def events_by_id(conn: Connection, ids: Iterable[str]) -> dict[str, ObservedEvent]:
    found: dict[str, ObservedEvent] = {}
    for chunk in chunks(sorted(set(ids))):
        found.update(
            (e.id, e)
            for e in observed_events(conn.execute(select(events).where(events.c.id.in_(chunk))))
        )
    return found


def unclaimed_events(conn: Connection, ids: Sequence[str]) -> dict[str, ObservedEvent]:
    """The events of `ids` that no expectation has claimed, as matching sees them."""
    found: dict[str, ObservedEvent] = {}
    for chunk in chunks(ids):
        claimed = claimed_among(conn, chunk)
        rows = conn.execute(select(events).where(events.c.id.in_(chunk)))
        found.update((e.id, e) for e in observed_events(rows) if e.id not in claimed)
    return found


def claimed_among(conn: Connection, ids: Iterable[str]) -> set[str]:
    """The events of `ids` some record holds: a sum's part, or a one-event record's event."""
    found: set[str] = set()
    for chunk in chunks(sorted(set(ids))):
        found.update(
            conn.execute(
                select(expectation_parts.c.event_id).where(expectation_parts.c.event_id.in_(chunk))
            ).scalars()
        )
        found.update(
            conn.execute(
                select(expectations.c.event_id).where(expectations.c.event_id.in_(chunk))
            ).scalars()
        )
    return found


def stored_candidates(
    conn: Connection, pending: Iterable[Expectation]
) -> tuple[dict[int, Claim], set[int]]:
    """The candidates pending expectations showed before this batch, while still unclaimed,
    and the ids of all that showed one (taken since or not)."""
    by_id = {x.id: x for x in pending}
    rows: list[Any] = []
    for chunk in chunks(sorted(by_id)):
        rows.extend(
            conn.execute(
                select(expectations.c.id, expectations.c.candidate_event_id).where(
                    expectations.c.id.in_(chunk), expectations.c.candidate_event_id.is_not(None)
                )
            )
        )
    free = unclaimed_events(conn, [row.candidate_event_id for row in rows])
    live = {
        row.id: Claim(by_id[row.id], free[row.candidate_event_id])
        for row in rows
        if row.candidate_event_id in free
    }
    return live, {row.id for row in rows}


def note_candidates(conn: Connection, candidates: Sequence[Claim]) -> None:
    """Show each pending expectation's closest candidate so far on its row."""
    if not candidates:
        return
    conn.execute(
        update(expectations)
        .where(expectations.c.id == bindparam("b_id"))
        .values(
            candidate_event_id=bindparam("b_event_id"),
            found_amount=bindparam("b_found"),
            difference=bindparam("b_difference"),
            # Settled on another event now: news for NATS subscribers.
            published_at=None,
        ),
        [
            {
                "b_id": c.expectation.id,
                "b_event_id": c.event.id,
                "b_found": text_of(c.event.amount),
                "b_difference": text_of(c.difference),
            }
            for c in candidates
        ],
    )


def closest_stored(
    conn: Connection, wanted: Expectation, claimed: Callable[[str], bool] = lambda _: False
) -> Claim | None:
    """The stored event fitting `wanted` closest in amount that no record holds and that
    `claimed` (the claims of the run in progress) does not name. Searched where the look-back
    searches: by transaction, or the record's name from a look-back before its deadline."""
    if wanted.amount is None:
        return None
    if wanted.tx_hash is not None:
        where = [events.c.tx_hash == wanted.tx_hash]
    else:
        first = max(wanted.deadline_ledger - LOOKBACK_LEDGERS + 1, 0)
        where = [
            events.c.contract_id == wanted.contract_id,
            events.c.name == wanted.event_name,
            events.c.id >= first_event_id(first),
            events.c.id < first_event_id(wanted.deadline_ledger + 1),
        ]
    found = observed_events(conn.execute(UNCLAIMED.where(*where)))
    return closest_of(wanted, [e for e in found if not claimed(e.id)])
