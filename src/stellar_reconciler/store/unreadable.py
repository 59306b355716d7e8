"""Unreadable amounts: pending records settled `amount_unreadable` at their deadline.

The shape hook (store/shapes.py) notes on a pending record the first event that fits it in
everything but a readable amount, and why the amount cannot be read. When the deadline
passes without a claim or a candidate, settlement.expire hands its overdue rows here first:
those with a note settle `amount_unreadable` (the reason kept on the row and in a
discrepancy) instead of `missing_expected`, which would send the operator looking for a
payment that did arrive.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, update

from stellar_reconciler.matching import AMOUNT_UNREADABLE
from stellar_reconciler.store.discrepancies import NewDiscrepancy, open_all
from stellar_reconciler.store.schema import expectations


def ledger_of_event(event_id: str) -> int:
    """The ledger an event id names: its TOID's top 32 bits."""
    return int(event_id.split("-", 1)[0]) >> 32


def settle_unreadable(conn: Connection, overdue: Sequence[Any]) -> list[Any]:
    """Settle the overdue rows that carry an unreadable-amount note; returns the others."""
    noted = [row for row in overdue if row.unreadable_event_id is not None]
    if not noted:
        return list(overdue)
    now = datetime.now(UTC)
    conn.execute(
        update(expectations)
        .where(expectations.c.id == bindparam("b_id"))
        .values(
            status=AMOUNT_UNREADABLE,
            event_ledger=bindparam("b_ledger"),
            settled_at=now,
            published_at=None,
            candidate_event_id=None,
            found_amount=None,
            difference=None,
        ),
        [{"b_id": row.id, "b_ledger": ledger_of_event(row.unreadable_event_id)} for row in noted],
    )
    open_all(conn, [unreadable_found(row) for row in noted])
    return [row for row in overdue if row.unreadable_event_id is None]


def unreadable_found(row: Any) -> NewDiscrepancy:
    ledger = ledger_of_event(row.unreadable_event_id)
    return NewDiscrepancy(
        kind="amount_unreadable",
        key=f"amount_unreadable:{row.external_id}",
        subject=row.external_id,
        first_ledger=ledger,
        last_ledger=row.deadline_ledger,
        message=(
            f"expected record {row.external_id!r}: event {row.unreadable_event_id} (ledger "
            f"{ledger}) fits it, but its amount cannot be read: {row.unreadable_reason}. The "
            f"contract {row.contract_id} probably changed what its {row.event_name} events "
            "carry (see the shape_changed discrepancy); check the payment by hand, teach your "
            "records the new shape, then resolve this discrepancy"
        ),
        expected={"amount": row.amount, "tolerance": row.tolerance},
        found={
            "event_id": row.unreadable_event_id,
            "ledger": ledger,
            "reason": row.unreadable_reason,
        },
    )
