"""Sum records (partial.py) on the expectations side: settling new ones when they are posted,
and what they show besides a one-event record (amounts settled and outstanding, event ids)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection

from stellar_reconciler.expectation_spec import ExpectationSpec
from stellar_reconciler.models import Batch
from stellar_reconciler.partial import SUM_KEY_PREFIX
from stellar_reconciler.store import partials
from stellar_reconciler.store.discrepancies import Discrepancies
from stellar_reconciler.store.findings import unexpected_key


def sum_key(spec: ExpectationSpec) -> str:
    """The prefix of a sum record's match key, which keeps one-event matching off it."""
    return SUM_KEY_PREFIX if spec.allow_partial or spec.group_id is not None else ""


def settle_batch_sums(conn: Connection, batch: Batch, discrepancies: Discrepancies) -> None:
    """Settle sums against a batch (store/partials.py); an event taken now that was reported
    `unexpected` before (an overshoot claimed at a deadline) has that report closed."""
    in_batch = {e.id for e in batch.events}
    for event_id in sorted(partials.settle_batch_sums(conn, batch) - in_batch):
        discrepancies.resolve_key(
            unexpected_key(event_id),
            "expectations",
            "claimed by a record settled by a sum, at its deadline",
            conn=conn,
        )


def settle_new_sums(
    conn: Connection,
    created: Sequence[Any],
    checkpoint: int | None,
    lookback: int,
    discrepancies: Discrepancies,
) -> list[Any]:
    """Settle the sum records of `created` rows against stored events (closing the
    `unexpected` reports of the events they take); returns the other rows."""
    sums = [r for r in created if r.match_key.startswith(SUM_KEY_PREFIX)]
    taken = partials.look_back_sums(conn, sums, checkpoint, lookback)
    for event_id in sorted(taken):
        discrepancies.resolve_key(
            unexpected_key(event_id),
            "expectations",
            "claimed by a record settled by a sum, posted late",
            conn=conn,
        )
    summed = {r.id for r in sums}
    return [r for r in created if r.id not in summed]


def sum_json(row: Any) -> dict[str, Any]:
    """What a sum record shows besides: how much arrived and how much is still owed (a
    group member: its share of the group's sum); `with_parts` adds the event ids."""
    if not (row.allow_partial or row.group_id is not None):
        return {"allow_partial": False, "group_id": None}
    settled = int(row.settled_amount or 0)
    return {
        "allow_partial": row.allow_partial,
        "group_id": row.group_id,
        "settled_amount": str(settled),
        "outstanding_amount": str(max(int(row.amount) - settled, 0)),
    }


def with_parts(
    conn: Connection, as_json: Callable[[Any], dict[str, Any]], rows: Sequence[Any]
) -> list[dict[str, Any]]:
    """Records as JSON (`as_json`), each sum record with the ids of the events it took."""
    sums = [r for r in rows if r.allow_partial or r.group_id is not None]
    by_lead = partials.parts_of(conn, [r.id for r in sums if r.group_id is None])
    by_group = partials.group_parts(conn, [r.group_id for r in sums if r.group_id])
    found = []
    for row in rows:
        record = as_json(row)
        if row.group_id is not None:
            record["event_ids"] = [p.event_id for p in by_group.get(row.group_id, [])]
        elif row.allow_partial:
            record["event_ids"] = by_lead.get(row.id, [])
        found.append(record)
    return found
