"""Settlement: what a claim, an unclaimed event or a passed deadline writes for expectations.

Everything here runs inside the caller's transaction: the batch's (as its hook) or the one
that creates expectations (looking back at stored events). Matching itself is pure
(assignment.py); this module has the records it needs loaded (store/claimants.py), writes
the outcome, and opens a discrepancy for every `missing_expected`, `amount_mismatch` and
`unexpected` finding (store/findings.py says what happened and what to do).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, text, update

from stellar_reconciler.assignment import priority, settle_ledgers
from stellar_reconciler.matching import (
    MATCHED,
    MISSING_EXPECTED,
    Claim,
    ObservedEvent,
)
from stellar_reconciler.models import Batch
from stellar_reconciler.partial import SUM_KEY_PREFIX
from stellar_reconciler.store.bulk import chunks
from stellar_reconciler.store.candidates import (
    closest_stored,
    note_candidates,
    stored_candidates,
    unclaimed_events,
)
from stellar_reconciler.store.claimants import (
    IS_PENDING,
    blocked_for,
    expectation_of,
    held_for,
    held_in_reach,
    held_past,
    mark_blocked,
    pending_for,
)
from stellar_reconciler.store.discrepancies import open_all
from stellar_reconciler.store.findings import mismatch_found, missing, text_of, unexpected
from stellar_reconciler.store.outcomes import mark_due
from stellar_reconciler.store.schema import expectation_parts, expectations
from stellar_reconciler.store.unreadable import settle_unreadable

_SETTLE_POSTGRESQL = text(
    """
    UPDATE expectations AS x
    SET status = v.status, event_id = v.event_id, event_ledger = v.event_ledger,
        found_amount = v.found_amount, difference = v.difference, settled_at = :now,
        published_at = NULL
    FROM unnest(
        CAST(:b_id AS integer[]), CAST(:b_status AS varchar[]), CAST(:b_event_id AS varchar[]),
        CAST(:b_event_ledger AS bigint[]), CAST(:b_found AS varchar[]),
        CAST(:b_difference AS varchar[])
    ) AS v(id, status, event_id, event_ledger, found_amount, difference)
    WHERE x.id = v.id
    """
)


def lock(conn: Connection) -> None:
    """Make creating expectations and committing a batch exclude each other, so a record
    posted during a commit either is seen by that batch or looks back at its events after
    it; never neither. SQLite's write transactions are serial already."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE expectations IN SHARE ROW EXCLUSIVE MODE"))


def settle(conn: Connection, claims: Sequence[Claim]) -> None:
    """Record each claim on its expectation; an amount mismatch opens a discrepancy."""
    if not claims:
        return
    rows = [
        {
            "b_id": c.expectation.id,
            "b_status": c.status,
            "b_event_id": c.event.id,
            "b_event_ledger": c.event.ledger,
            "b_found": text_of(c.event.amount),
            "b_difference": text_of(c.difference),
        }
        for c in claims
    ]
    now = datetime.now(UTC)
    if conn.dialect.name == "postgresql":
        # One statement over arrays: a row-by-row executemany costs more than the match.
        columns = {key: [row[key] for row in rows] for key in rows[0]}
        conn.execute(_SETTLE_POSTGRESQL, {**columns, "now": now})
    else:
        conn.execute(
            update(expectations)
            .where(expectations.c.id == bindparam("b_id"))
            .values(
                status=bindparam("b_status"),
                event_id=bindparam("b_event_id"),
                event_ledger=bindparam("b_event_ledger"),
                found_amount=bindparam("b_found"),
                difference=bindparam("b_difference"),
                candidate_event_id=None,
                settled_at=now,
                published_at=None,
            ),
            rows,
        )
    open_all(conn, [mismatch_found(c) for c in claims if c.status != MATCHED])


def move(conn: Connection, moved: Sequence[Claim]) -> None:
    """Point matched expectations at the other exact event they moved to. Their old events go
    to others in the same transaction, so every moved row lets go first: the unique index on
    event_id holds after each statement, not only at commit."""
    if not moved:
        return
    ids = [c.expectation.id for c in moved]
    for chunk in chunks(ids):
        conn.execute(update(expectations).where(expectations.c.id.in_(chunk)).values(event_id=None))
    conn.execute(
        update(expectations)
        .where(expectations.c.id == bindparam("b_id"))
        .values(
            event_id=bindparam("b_event_id"),
            event_ledger=bindparam("b_event_ledger"),
            found_amount=bindparam("b_found"),
            difference=bindparam("b_difference"),
            # Settled on another event now: news for NATS subscribers.
            published_at=None,
        ),
        [
            {
                "b_id": c.expectation.id,
                "b_event_id": c.event.id,
                "b_event_ledger": c.event.ledger,
                "b_found": text_of(c.event.amount),
                "b_difference": text_of(c.difference),
            }
            for c in moved
        ],
    )


def expire(conn: Connection, through: int, only: Sequence[int] | None = None) -> int:
    """Settle pending expectations whose deadline ledger is processed (all of them, or those
    of `only`): amount_mismatch against their candidate when no one has claimed it since,
    amount_unreadable when only an unreadable event fitted (store/unreadable.py), else
    missing_expected. Returns how many."""
    query = select(expectations).where(
        IS_PENDING,
        expectations.c.deadline_ledger <= through,
        expectations.c.outcome_due.is_(False),
        # Sum records (allow_partial, groups) settle in store/partials.py.
        ~expectations.c.match_key.startswith(SUM_KEY_PREFIX),
    )
    overdue: list[Any] = []
    if only is None:
        overdue = list(conn.execute(query.order_by(expectations.c.id)))
    else:
        for chunk in chunks(only):
            overdue.extend(conn.execute(query.where(expectations.c.id.in_(chunk))))
    # A blocked record waits while the record holding its exact event may still move
    # (assignment.held_until).
    waiting = held_past(conn, [row for row in overdue if row.blocked], through)
    overdue = [row for row in overdue if row.id not in waiting]
    if not overdue:
        return 0
    overdue.sort(key=lambda row: priority(expectation_of(row)))
    wanted = sorted({row.candidate_event_id for row in overdue if row.candidate_event_id})
    free = unclaimed_events(conn, wanted)
    mismatches: list[Claim] = []
    missed: list[Any] = []
    taken: set[str] = set()
    for row in overdue:
        claim = None
        if row.candidate_event_id:
            shown = free.pop(row.candidate_event_id, None)
            if shown is not None and shown.id not in taken:
                claim = Claim(expectation_of(row), shown)
            else:
                # Another record took the one it showed: the closest still free, if any.
                claim = closest_stored(conn, expectation_of(row), taken.__contains__)
        if claim is None:
            missed.append(row)
        else:
            taken.add(claim.event.id)
            free.pop(claim.event.id, None)
            mismatches.append(claim)
    settle(conn, mismatches)
    # An event fitted but its amount could not be read: say so, not "missing".
    missed = settle_unreadable(conn, missed)
    # A record pinned to a transaction asks the network what became of it first.
    mark_due(conn, [row.id for row in missed if row.tx_hash is not None])
    missed = [row for row in missed if row.tx_hash is None]
    now = datetime.now(UTC)
    for chunk in chunks([row.id for row in missed]):
        conn.execute(
            update(expectations)
            .where(expectations.c.id.in_(chunk))
            .values(
                status=MISSING_EXPECTED,
                settled_at=now,
                published_at=None,
                candidate_event_id=None,
                found_amount=None,
                difference=None,
            )
        )
    open_all(conn, [missing(row) for row in missed])
    return len(overdue)


def settle_batch(conn: Connection, batch: Batch, report: Collection[str] = ()) -> None:
    """Match a batch's events, report the unclaimed events of the `report` contracts as
    unexpected, and expire what the batch's last ledger makes overdue.

    Repairs re-commit ledgers already seen through the same hook: events claimed before stay
    with their claimants, and an unclaimed one is reported again only if its earlier report
    was resolved meanwhile (an open one is never doubled)."""
    lock(conn)
    waiting = {
        (contract_id, name)
        for contract_id, name in conn.execute(
            select(expectations.c.contract_id, expectations.c.event_name)
            .where(IS_PENDING)
            .distinct()
        )
    }
    observed = [
        ObservedEvent.of(e)
        for e in batch.events
        if e.in_successful_contract_call
        and e.name
        and (e.contract_id in report or (e.contract_id, e.name) in waiting)
    ]
    if observed:
        # Ids sort in ledger order, so one range on the unique index covers the batch.
        first, last = min(e.id for e in observed), max(e.id for e in observed)
        claimed_before = set(
            conn.execute(
                select(expectations.c.event_id).where(expectations.c.event_id.between(first, last))
            ).scalars()
        )
        # Parts of sums (store/partials.py), taken in this transaction or before.
        claimed_before.update(
            conn.execute(
                select(expectation_parts.c.event_id).where(
                    expectation_parts.c.event_id.between(first, last)
                )
            ).scalars()
        )
        observed = [e for e in observed if e.id not in claimed_before]
    relevant = [e for e in observed if (e.contract_id, e.name) in waiting]
    claimed = _settle_ledger_by_ledger(conn, relevant)
    if report:
        stray = [e for e in observed if e.contract_id in report and e.id not in claimed]
        open_all(conn, [unexpected(e) for e in stray])
    expire(conn, batch.last_ledger)


def _settle_ledger_by_ledger(conn: Connection, relevant: Sequence[ObservedEvent]) -> set[str]:
    """Settle the batch's events ledger by ledger (matching.settle_ledgers) and write the
    outcome; returns the ids of the batch's events claimed."""
    if not relevant:
        return set()
    pending = pending_for(conn, relevant)
    blocked = blocked_for(conn, relevant)
    everyone = list({x.id: x for x in [*pending, *blocked]}.values())
    held = held_for(conn, relevant)
    if blocked:
        held = held_in_reach(conn, held)
    shown, had = stored_candidates(conn, everyone)
    outcome = settle_ledgers(
        everyone,
        relevant,
        held,
        shown.values(),
        blocked,
        lambda wanted, claimed: closest_stored(conn, wanted, claimed),
        had,
    )
    move(conn, outcome.moved)
    settle(conn, outcome.claims)
    note_candidates(conn, outcome.candidates)
    settled = {c.expectation.id for c in outcome.claims}
    mark_blocked(conn, outcome.blocked, [x for x in blocked if x.id not in settled])
    return outcome.taken | {c.event.id for c in held}
