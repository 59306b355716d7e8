"""Revisions: a record settled as an amount mismatch gives its event up to a record posted
later that the event fits exactly (assignment.Revision), and is settled again.

The event was the closest the first record could find, not its payment: the record posted
later names it exactly. Leaving it with the mismatch would raise two false alarms (a mismatch
and the later record missing) where there is at most one. The old discrepancy is resolved
saying who took the event, and the record is settled again by the usual deadline rules
(settlement.expire): its next candidate, an unreadable amount, its transaction's outcome, or
missing. Its row is published again, so NATS and webhook consumers hear of the change.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, select, update

from stellar_reconciler.assignment import Revision
from stellar_reconciler.matching import AMOUNT_MISMATCH, PENDING, Claim
from stellar_reconciler.store import claimants, settlement
from stellar_reconciler.store.bulk import chunks
from stellar_reconciler.store.candidates import observed_events
from stellar_reconciler.store.discrepancies import stored_key
from stellar_reconciler.store.findings import text_of
from stellar_reconciler.store.schema import discrepancies, events, expectations


def mismatches_among(conn: Connection, where: Sequence[ColumnElement[bool]]) -> list[Claim]:
    """The amount mismatches settled on the stored events `where` selects, as held claims."""
    rows = list(
        conn.execute(
            select(events, expectations.c.id.label("holder"))
            .join(expectations, expectations.c.event_id == events.c.id)
            .where(expectations.c.status == AMOUNT_MISMATCH, *where)
        )
    )
    if not rows:
        return []
    holders: dict[int, Any] = {}
    for chunk in chunks(sorted({row.holder for row in rows})):
        holders.update(
            (row.id, row)
            for row in conn.execute(
                select(*claimants.MATCHER_COLUMNS).where(expectations.c.id.in_(chunk))
            )
        )
    return [
        Claim(claimants.expectation_of(holders[row.holder]), event)
        for row, event in zip(rows, observed_events(rows), strict=True)
    ]


def release(conn: Connection, revisions: Sequence[Revision]) -> None:
    """Let go of the events the revised records lost, before anyone claims them (the unique
    index on event_id holds after each statement), and put the records back to pending with
    their new candidate, for settle_again."""
    for revision in revisions:
        again = revision.settled
        conn.execute(
            update(expectations)
            .where(expectations.c.id == revision.expectation.id)
            .values(
                status=PENDING,
                event_id=None,
                event_ledger=None,
                candidate_event_id=again.event.id if again else None,
                found_amount=text_of(again.event.amount) if again else None,
                difference=text_of(again.difference) if again else None,
                settled_at=None,
                blocked=False,
            )
        )


def settle_again(
    conn: Connection, revisions: Sequence[Revision], claims: Sequence[Claim], through: int
) -> None:
    """Resolve each revised record's mismatch, naming who took its event, and settle it again
    by the deadline rules (its deadline is behind `through`)."""
    if not revisions:
        return
    taker = {c.event.id: c.expectation.external_id for c in claims}
    for revision in revisions:
        name = revision.expectation.external_id
        conn.execute(
            update(discrepancies)
            .where(
                discrepancies.c.key == stored_key(f"amount_mismatch:{name}"),
                discrepancies.c.resolved_at.is_(None),
            )
            .values(
                resolved_at=datetime.now(UTC),
                resolved_by="expectations",
                resolution=(
                    f"event {revision.lost.id} is the exact match of expected record "
                    f"{taker.get(revision.lost.id, 'posted later')!r}, posted later; "
                    f"{name!r} was settled again"
                ),
            )
        )
    settlement.expire(conn, through, [r.expectation.id for r in revisions])
