"""Claimants: expectation rows as matching reads them, and which of them a batch loads.

The pending records its events may fit (`pending_for`), the blocked ones, whatever their key
(`blocked_for`), and the matched records that may move to free an event (`held_for`, and
`held_in_reach` for chains of moves). Reads only, inside the caller's transaction, except
`mark_blocked`, the flag the next batch finds blocked records by. What the outcome writes is
settlement.py's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, select, text, update

from stellar_reconciler.assignment import latest_in_reach
from stellar_reconciler.matching import MATCHED, Claim, Expectation, ObservedEvent
from stellar_reconciler.store.bulk import chunks
from stellar_reconciler.store.candidates import LOOKBACK_LEDGERS, events_by_id
from stellar_reconciler.store.schema import expectations

# Literal, not a bound parameter, so SQLite can use the partial indexes on pending rows.
IS_PENDING = text("expectations.status = 'pending'")

# A blocked record's event is looked for this many moves away at most (held_in_reach,
# held_past).
MAX_MOVES_AWAY = 8

# What matching reads of an expectation row (expectation_of).
MATCHER_COLUMNS = [
    expectations.c[name]
    for name in (
        "id",
        "external_id",
        "contract_id",
        "event_name",
        "deadline_ledger",
        "tx_hash",
        "topics",
        "amount",
        "tolerance",
    )
]


def expectation_of(row: Any) -> Expectation:
    return Expectation(
        id=row.id,
        external_id=row.external_id,
        contract_id=row.contract_id,
        event_name=row.event_name,
        deadline_ledger=row.deadline_ledger,
        tx_hash=row.tx_hash,
        topics=tuple(sorted((int(p), v) for p, v in row.topics.items())),
        amount=int(row.amount) if row.amount is not None else None,
        tolerance=int(row.tolerance),
    )


def pending_for(conn: Connection, observed: Iterable[ObservedEvent]) -> list[Expectation]:
    """The pending expectations these events could satisfy, by their match keys."""
    keys: dict[tuple[str, str], set[str]] = {}
    for event in observed:
        group = (event.contract_id, event.name or "")
        keys.setdefault(group, set()).update(event.match_keys())
    pending: list[Expectation] = []
    for (contract_id, name), group_keys in keys.items():
        for chunk in chunks(sorted(group_keys)):
            rows = conn.execute(
                select(*MATCHER_COLUMNS).where(
                    IS_PENDING,
                    expectations.c.contract_id == contract_id,
                    expectations.c.event_name == name,
                    expectations.c.match_key.in_(chunk),
                )
            )
            pending.extend(expectation_of(r) for r in rows)
    return pending


def held_for(
    conn: Connection,
    observed: Iterable[ObservedEvent],
    pinned_to: Iterable[Expectation] = (),
) -> list[Claim]:
    """Matched expectations that could move to one of these events, with the events they hold
    now: each may move to free its own for a pending record (matching._augment). They share
    a match key with an event, and their deadline is not before its ledger.
    `pinned_to` adds the holders of the events these expectations fit (a look-back may want
    those events)."""
    observed, pinned_to = list(observed), list(pinned_to)
    if not observed and not pinned_to:
        return []
    first_ledger = min((e.ledger for e in observed), default=0)
    keys: dict[tuple[str, str], set[str]] = {}
    for event in observed:
        keys.setdefault((event.contract_id, event.name or ""), set()).update(event.match_keys())
    for wanted in pinned_to:
        keys.setdefault((wanted.contract_id, wanted.event_name), set()).add(wanted.key)
    rows: list[Any] = []
    for (contract_id, name), group_keys in keys.items():
        for chunk in chunks(sorted(group_keys)):
            rows.extend(
                conn.execute(
                    select(*MATCHER_COLUMNS, expectations.c.event_id).where(
                        expectations.c.status == MATCHED,
                        expectations.c.contract_id == contract_id,
                        expectations.c.event_name == name,
                        expectations.c.match_key.in_(chunk),
                        expectations.c.deadline_ledger >= first_ledger,
                    )
                )
            )
    holding = events_by_id(conn, [row.event_id for row in rows])
    unique = {row.id: row for row in rows}
    return [
        Claim(expectation_of(row), holding[row.event_id])
        for row in unique.values()
        if row.event_id in holding
    ]


def blocked_for(conn: Connection, observed: Iterable[ObservedEvent]) -> list[Expectation]:
    """Pending expectations of these events' contracts and names that wait for an event
    another holds: whatever their match key, new events may free one for them."""
    groups = {(e.contract_id, e.name or "") for e in observed}
    found: list[Expectation] = []
    for contract_id, name in sorted(groups):
        rows = conn.execute(
            select(*MATCHER_COLUMNS).where(
                IS_PENDING,
                expectations.c.blocked.is_(True),
                expectations.c.contract_id == contract_id,
                expectations.c.event_name == name,
            )
        )
        found.extend(expectation_of(r) for r in rows)
    return found


def held_in_reach(conn: Connection, held: list[Claim]) -> list[Claim]:
    """`held`, and the holders of events that those holders could move to, and so on: a
    blocked record's event may be freed by a chain of moves (the first holder onto an event a
    second holds, the second onto a new one), and matching sees the chain only if it sees
    every holder on it. Each round asks held_for about the events the last round's holders
    hold; the search stops after MAX_MOVES_AWAY rounds."""
    found = {c.expectation.id: c for c in held}
    frontier = [c.event for c in held]
    seen = {e.id for e in frontier}
    for _ in range(MAX_MOVES_AWAY):
        new = [c for c in held_for(conn, frontier) if c.expectation.id not in found]
        if not new:
            break
        found.update((c.expectation.id, c) for c in new)
        frontier = [c.event for c in new if c.event.id not in seen]
        seen.update(e.id for e in frontier)
    return list(found.values())


def held_past(conn: Connection, blocked: Sequence[Any], through: int) -> set[int]:
    """The ids of `blocked` rows that must wait past `through`: a matched record that could
    free their exact event, directly or by a chain of moves (MAX_MOVES_AWAY at most), has a
    later deadline, so it may yet move onto an event still to come (assignment.held_until).
    Each record's holders are read once however many blocked rows reach it."""
    holders: dict[int, list[Expectation]] = {}

    def holders_of(record: Expectation) -> list[Expectation]:
        if record.id not in holders:
            holders[record.id] = _holding_exact(conn, record)
        return holders[record.id]

    return {
        row.id
        for row in blocked
        if latest_in_reach(expectation_of(row), holders_of, MAX_MOVES_AWAY) > through
    }


def _holding_exact(conn: Connection, record: Expectation) -> list[Expectation]:
    """Matched records holding an event `record` fits exactly, among the events of its
    look-back window (store/candidates.py)."""
    rows = conn.execute(
        select(*MATCHER_COLUMNS, expectations.c.event_id).where(
            expectations.c.status == MATCHED,
            expectations.c.contract_id == record.contract_id,
            expectations.c.event_name == record.event_name,
            expectations.c.event_ledger <= record.deadline_ledger,
            expectations.c.event_ledger > record.deadline_ledger - LOOKBACK_LEDGERS,
        )
    ).all()
    holding = events_by_id(conn, [h.event_id for h in rows])
    return [
        expectation_of(h)
        for h in rows
        if (event := holding.get(h.event_id)) is not None
        and record.fits(event)
        and record.within_tolerance(event.amount)
    ]


def mark_blocked(
    conn: Connection, blocked: Iterable[Expectation], unblocked: Iterable[Expectation] = ()
) -> None:
    """Flag pending expectations as blocked (or not any more): see blocked_for."""
    now_blocked = {x.id for x in blocked}
    for flag, ids in (
        (True, sorted(now_blocked)),
        (False, sorted({x.id for x in unblocked} - now_blocked)),
    ):
        for chunk in chunks(ids):
            conn.execute(
                update(expectations).where(expectations.c.id.in_(chunk)).values(blocked=flag)
            )
