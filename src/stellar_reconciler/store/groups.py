"""Groups of expected records (one `group_id`), settled as a whole (partial.py): what may
join a group, the group as the API shows it, and cancelling it.

A group is the sum of its members: they share a contract, an event name and a deadline, so
that one deadline settles them together, and they change together. A member cannot be
cancelled or given another deadline alone (store/lifecycle.py asks `member_of`): the group is
cancelled as a whole here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select, update

from stellar_reconciler.errors import (
    ExpectationGroupMemberError,
    ExpectationGroupNotFoundError,
    ExpectationSettledError,
)
from stellar_reconciler.matching import CANCELLED
from stellar_reconciler.partial import OPEN
from stellar_reconciler.store.bulk import chunks
from stellar_reconciler.store.database import read_connection, write_transaction
from stellar_reconciler.store.partials import group_parts, group_rows, release
from stellar_reconciler.store.schema import expectations
from stellar_reconciler.store.settlement import lock


def check_groups(
    conn: Connection, rows: Sequence[dict[str, Any]], index_of: dict[str, int]
) -> list[tuple[int, str, str]]:
    """Problems (index, field, message) with the groups new `rows` join: every member of a
    group must share contract_id, event_name and deadline_ledger, and a settled group takes
    no new member."""
    problems: list[tuple[int, str, str]] = []
    joining: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["group_id"] is not None:
            joining.setdefault(row["group_id"], []).append(row)
    stored: dict[str, list[Any]] = {}
    for chunk in chunks(sorted(joining)):
        for found in conn.execute(select(expectations).where(expectations.c.group_id.in_(chunk))):
            stored.setdefault(found.group_id, []).append(found)
    for group_id, new in joining.items():
        old = stored.get(group_id, [])
        closed = sorted({r.status for r in old if r.status not in OPEN})
        first = old[0]._mapping if old else new[0]
        for row in new:
            where = index_of[row["external_id"]]
            if closed:
                problems.append(
                    (
                        where,
                        "group_id",
                        f"group {group_id!r} is {', '.join(closed)} already and takes no new "
                        "record; post it under a new group_id",
                    )
                )
                continue
            differs = [
                name
                for name in ("contract_id", "event_name", "deadline_ledger")
                if row[name] != first[name]
            ]
            if differs:
                problems.append(
                    (
                        where,
                        "group_id",
                        f"every record of group {group_id!r} must have the same "
                        f"{', '.join(differs)} as its first record ({first['external_id']!r}): "
                        "a group is paid and settled as a whole",
                    )
                )
    return problems


def member_of(row: Any, what: str) -> None:
    """Refuse changing one member of a group alone (a 409 saying what to do instead)."""
    if row.group_id is not None:
        raise ExpectationGroupMemberError(row.external_id, row.group_id, what)


def group_json(rows: Sequence[Any], parts: Sequence[Any]) -> dict[str, Any]:
    amount = sum(int(r.amount) for r in rows)
    tolerance = sum(int(r.tolerance) for r in rows)
    taken = [p for p in parts if not p.overshoot]
    settled = sum(int(p.amount) for p in taken)
    found = settled + sum(int(p.amount) for p in parts if p.overshoot)
    statuses = {r.status for r in rows}
    status = statuses.pop() if len(statuses) == 1 else "mixed"
    return {
        "group_id": rows[0].group_id,
        "status": status,
        "contract_id": rows[0].contract_id,
        "event_name": rows[0].event_name,
        "deadline_ledger": max(r.deadline_ledger for r in rows),
        "amount": str(amount),
        "tolerance": str(tolerance),
        "settled_amount": str(settled),
        "outstanding_amount": str(max(amount - settled, 0)),
        "difference": str(found - amount) if parts else None,
        "event_ids": [p.event_id for p in parts],
        "members": [
            {
                "external_id": r.external_id,
                "status": r.status,
                "amount": r.amount,
                "tolerance": r.tolerance,
                "settled_amount": r.settled_amount or "0",
                "outstanding_amount": str(int(r.amount) - int(r.settled_amount or 0)),
            }
            for r in rows
        ],
    }


class ExpectationGroups:
    """Groups as one thing: read one, cancel one."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def get(self, group_id: str) -> dict[str, Any]:
        with read_connection(self.engine) as conn:
            rows = group_rows(conn, group_id)
            if not rows:
                raise ExpectationGroupNotFoundError(group_id)
            parts = group_parts(conn, [group_id]).get(group_id, [])
        return group_json(rows, parts)

    def cancel(self, group_id: str, by: str) -> tuple[dict[str, Any], bool]:
        """Cancel every member of an open group and release its events; (group, changed).
        A cancelled group again changes nothing; a settled one is refused (409)."""
        with write_transaction(self.engine) as conn:
            lock(conn)
            rows = group_rows(conn, group_id)
            if not rows:
                raise ExpectationGroupNotFoundError(group_id)
            if all(r.status == CANCELLED for r in rows):
                return group_json(rows, []), False
            settled = sorted({r.status for r in rows if r.status not in (*OPEN, CANCELLED)})
            if settled:
                raise ExpectationSettledError(f"group:{group_id}", settled[0], "be cancelled")
            now = datetime.now(UTC)
            conn.execute(
                update(expectations)
                .where(expectations.c.group_id == group_id, expectations.c.status.in_(OPEN))
                .values(
                    status=CANCELLED,
                    cancelled_at=now,
                    cancelled_by=by,
                    settled_at=now,
                    settled_amount=None,
                    candidate_event_id=None,
                    found_amount=None,
                    difference=None,
                )
            )
            release(conn, [r.id for r in rows], group_id)
            return group_json(group_rows(conn, group_id), []), True
