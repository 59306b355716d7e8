"""Sum settlement in the store: partial records and groups (partial.py) against stored and
incoming events, inside the caller's transaction.

The batch hook runs `settle_batch_sums` before the one-event matching of settlement.py and
hands that the batch without the events sums took, so those are neither claimed twice nor
reported `unexpected`. A posted sum record looks back at unclaimed stored events
(`look_back_sums`), as a one-event record does. An event is claimed by a sum when it has a
row in `expectation_parts`, by a one-event record when it is some row's `event_id`;
`unclaimed` reads both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from stellar_reconciler.matching import (
    AMOUNT_MISMATCH,
    MATCHED,
    MISSING_EXPECTED,
    PARTIALLY_MATCHED,
    ObservedEvent,
)
from stellar_reconciler.models import Batch
from stellar_reconciler.partial import (
    OPEN,
    SUM_KEY_PREFIX,
    SumState,
    SumTarget,
    settle_sums,
)
from stellar_reconciler.store.bulk import chunks
from stellar_reconciler.store.candidates import claimed_among, events_by_id, observed_events
from stellar_reconciler.store.claimants import IS_PENDING, expectation_of
from stellar_reconciler.store.discrepancies import NewDiscrepancy, open_all
from stellar_reconciler.store.findings import text_of
from stellar_reconciler.store.schema import events, expectation_parts, expectations
from stellar_reconciler.store.settlement import lock

IS_SUM = expectations.c.match_key.startswith(SUM_KEY_PREFIX)
IS_OPEN = expectations.c.status.in_(OPEN)
FINAL = (MATCHED, AMOUNT_MISMATCH, MISSING_EXPECTED)


def first_event_id(ledger: int) -> str:
    """A bound below every event id of `ledger` (ids start with the ledger's TOID)."""
    return f"{ledger << 32:019d}"


def target_key(row: Any) -> str:
    return f"group:{row.group_id}" if row.group_id is not None else f"record:{row.external_id}"


def _rows_of_targets(conn: Connection, rows: Sequence[Any]) -> list[Any]:
    """`rows` with every open member of their groups added."""
    found = {row.id: row for row in rows}
    groups = sorted({row.group_id for row in rows if row.group_id is not None})
    for chunk in chunks(groups):
        found.update(
            (row.id, row)
            for row in conn.execute(
                select(expectations).where(expectations.c.group_id.in_(chunk), IS_OPEN)
            )
        )
    return list(found.values())


def _targets(rows: Iterable[Any]) -> tuple[dict[str, SumTarget], dict[str, list[Any]]]:
    members: dict[str, list[Any]] = {}
    for row in rows:
        members.setdefault(target_key(row), []).append(row)
    targets = {
        key: SumTarget(key, tuple(expectation_of(row) for row in group))
        for key, group in members.items()
    }
    return targets, members


def _states(
    conn: Connection, targets: dict[str, SumTarget], members: dict[str, list[Any]]
) -> dict[str, SumState]:
    """Where each target stands: its parts (a group's by group id, since a member joining
    later may become its lead) and its candidate (on whichever member row shows one)."""
    leads = [rows[0] for rows in members.values()]
    by_group = group_parts(conn, [r.group_id for r in leads if r.group_id is not None])
    by_record = parts_of(conn, [r.id for r in leads if r.group_id is None])
    parts = {
        key: [p.event_id for p in by_group.get(rows[0].group_id, [])]
        if rows[0].group_id is not None
        else by_record.get(rows[0].id, [])
        for key, rows in members.items()
    }
    candidates = {
        key: row.candidate_event_id
        for key, rows in members.items()
        for row in rows
        if row.candidate_event_id is not None
    }
    found = events_by_id(conn, [*(e for ids in parts.values() for e in ids), *candidates.values()])
    return {
        key: SumState(
            status=members[key][0].status,
            parts=tuple(found[e] for e in parts[key] if e in found),
            candidate=found.get(candidates.get(key, "")),
        )
        for key in targets
    }


def _settle(
    conn: Connection,
    rows: Sequence[Any],
    offered: Iterable[ObservedEvent],
    through_ledger: int,
) -> set[str]:
    """Offer events to the targets of `rows`, close the overdue ones, write what changed;
    returns the ids of the events taken now."""
    targets, members = _targets(_rows_of_targets(conn, rows))
    if not targets:
        return set()
    states = _states(conn, targets, members)
    candidates = [s.candidate.id for s in states.values() if s.candidate is not None]
    changed = settle_sums(
        targets.values(), offered, through_ledger, states, claimed_among(conn, candidates)
    )
    taken: set[str] = set()
    for key, after in changed.items():
        before_ids = {e.id for e in states[key].claimed}
        new = [e for e in after.claimed if e.id not in before_ids]
        taken.update(e.id for e in new)
        _write(conn, targets[key], members[key], after, new)
    return taken


def _write(
    conn: Connection,
    target: SumTarget,
    rows: Sequence[Any],
    state: SumState,
    new: Sequence[ObservedEvent],
) -> None:
    now = datetime.now(UTC)
    group_id = rows[0].group_id
    if new:
        conn.execute(
            insert(expectation_parts),
            [
                {
                    "event_id": e.id,
                    "expectation_id": target.lead.id,
                    "group_id": group_id,
                    "event_ledger": e.ledger,
                    "amount": str(e.amount),
                    "overshoot": state.overshoot is not None and e.id == state.overshoot.id,
                    "claimed_at": now,
                }
                for e in new
            ],
        )
    final = state.status in FINAL
    remaining = state.settled
    for member in sorted(target.members, key=lambda m: (m.deadline_ledger, m.external_id)):
        # A group's sum is shown as each member's share, filled in priority order.
        share = min(member.amount or 0, remaining) if group_id is not None else remaining
        remaining -= share
        solo = group_id is None
        conn.execute(
            update(expectations)
            .where(expectations.c.id == member.id)
            .values(
                status=state.status,
                settled_amount=str(share),
                candidate_event_id=(
                    state.candidate.id
                    if state.candidate is not None and member.id == target.lead.id and not final
                    else None
                ),
                found_amount=text_of(state.settled + _overshoot(state)) if solo else None,
                difference=text_of(state.difference(target)) if solo else None,
                settled_at=now if final else None,
                published_at=None,
            )
        )
    if state.status in (AMOUNT_MISMATCH, MISSING_EXPECTED):
        open_all(conn, [_finding(target, rows, state)])


def _overshoot(state: SumState) -> int:
    return state.overshoot.amount or 0 if state.overshoot is not None else 0


def _finding(target: SumTarget, rows: Sequence[Any], state: SumState) -> NewDiscrepancy:
    group_id = rows[0].group_id
    name = f"group {group_id!r}" if group_id is not None else f"record {rows[0].external_id!r}"
    subject = group_id if group_id is not None else rows[0].external_id
    ids = [e.id for e in state.claimed]
    expected = {"amount": str(target.amount), "tolerance": str(target.tolerance)}
    expected["deadline_ledger"] = str(target.deadline_ledger)
    if group_id is not None:
        expected["members"] = ",".join(sorted(r.external_id for r in rows))
    found = {
        "event_ids": ids,
        "settled_amount": str(state.settled),
        "outstanding_amount": str(state.outstanding(target)),
        "difference": str(state.difference(target)),
    }
    if state.status == MISSING_EXPECTED:
        what = f"no event towards its {target.amount} arrived by its deadline"
        advice = "check that the payments were sent and the records' fields are right"
    elif state.overshoot is not None:
        what = (
            f"{state.settled} arrived in {len(state.parts)} event(s), then event "
            f"{state.overshoot.id} carrying {state.overshoot.amount} took it past "
            f"{target.amount} (tolerance {target.tolerance}): difference "
            f"{state.difference(target)}"
        )
        advice = "settle the overpayment with the counterparty or correct your records"
    else:
        what = (
            f"only {state.settled} of {target.amount} arrived by its deadline, in events "
            f"{', '.join(ids)}: {state.outstanding(target)} outstanding"
        )
        advice = "collect the rest, or correct your records"
    key_kind = "amount_mismatch" if state.status == AMOUNT_MISMATCH else "missing_expected"
    return NewDiscrepancy(
        kind=key_kind,
        key=f"{key_kind}:{'group:' if group_id is not None else ''}{subject}",
        subject=subject,
        first_ledger=min((e.ledger for e in state.claimed), default=None),
        last_ledger=target.deadline_ledger,
        message=f"expected {name}: {what}. Then {advice}, and resolve this discrepancy",
        expected=expected,
        found=found,
    )


def settle_batch_sums(conn: Connection, batch: Batch) -> set[str]:
    """Offer the batch's events to the open sum records they fit and close those its last
    ledger makes overdue; returns the ids of the events taken (an overshoot claimed at a
    deadline may be an older event). The one-event matching that runs next in the same
    transaction finds the taken ones in expectation_parts and leaves them."""
    lock(conn)
    waiting: set[tuple[str, str]] = set()
    # One query per status, each on its partial index.
    for status in (IS_PENDING, expectations.c.status == PARTIALLY_MATCHED):
        waiting.update(
            (contract_id, name)
            for contract_id, name in conn.execute(
                select(expectations.c.contract_id, expectations.c.event_name)
                .where(status, IS_SUM)
                .distinct()
            )
        )
    if not waiting:
        return set()
    fitting = [
        ObservedEvent.of(e)
        for e in batch.events
        if (e.contract_id, e.name) in waiting and e.in_successful_contract_call
    ]
    fitting = [e for e in fitting if e.amount is not None and e.amount > 0]
    claimed = claimed_among(conn, [e.id for e in fitting])
    offered = [e for e in fitting if e.id not in claimed]
    rows = _open_rows_for(conn, offered)
    for status in (IS_PENDING, expectations.c.status == PARTIALLY_MATCHED):
        rows.extend(
            conn.execute(
                select(expectations).where(
                    status, expectations.c.deadline_ledger <= batch.last_ledger, IS_SUM
                )
            )
        )
    return _settle(conn, rows, offered, batch.last_ledger) if rows else set()


def _open_rows_for(conn: Connection, offered: Iterable[ObservedEvent]) -> list[Any]:
    keys: dict[tuple[str, str], set[str]] = {}
    for event in offered:
        keys.setdefault((event.contract_id, event.name or ""), set()).update(
            SUM_KEY_PREFIX + key for key in event.match_keys()
        )
    rows: list[Any] = []
    for (contract_id, name), wanted in keys.items():
        for chunk in chunks(sorted(wanted)):
            rows.extend(
                conn.execute(
                    select(expectations).where(
                        expectations.c.contract_id == contract_id,
                        expectations.c.event_name == name,
                        expectations.c.match_key.in_(chunk),
                        IS_OPEN,
                    )
                )
            )
    return rows


def look_back_sums(
    conn: Connection, created: Sequence[Any], checkpoint: int | None, lookback: int
) -> set[str]:
    """Settle new sum records (and the groups they join) against unclaimed stored events from
    `lookback` ledgers before the checkpoint up to their deadline; returns the events taken."""
    if checkpoint is None or not created:
        return set()
    windows: dict[tuple[str, str], int] = {}
    for row in _rows_of_targets(conn, created):
        group = (row.contract_id, row.event_name)
        windows[group] = max(windows.get(group, 0), row.deadline_ledger)
    first = first_event_id(max(checkpoint - lookback + 1, 0))
    offered: list[ObservedEvent] = []
    for (contract_id, name), deadline in windows.items():
        rows = conn.execute(
            select(events)
            .outerjoin(expectations, expectations.c.event_id == events.c.id)
            .outerjoin(expectation_parts, expectation_parts.c.event_id == events.c.id)
            .where(
                events.c.contract_id == contract_id,
                events.c.name == name,
                events.c.id >= first,
                events.c.id < first_event_id(deadline + 1),
                events.c.in_successful_contract_call,
                expectations.c.id.is_(None),
                expectation_parts.c.event_id.is_(None),
            )
        )
        offered.extend(observed_events(rows))
    return _settle(conn, created, offered, checkpoint)


def parts_of(conn: Connection, lead_ids: Sequence[int]) -> dict[int, list[str]]:
    """The event ids each sum (by its record or lead member id) took, in id order."""
    found: dict[int, list[str]] = {}
    for chunk in chunks(sorted(set(lead_ids))):
        for expectation_id, event_id in conn.execute(
            select(expectation_parts.c.expectation_id, expectation_parts.c.event_id)
            .where(expectation_parts.c.expectation_id.in_(chunk))
            .order_by(expectation_parts.c.event_id)
        ):
            found.setdefault(expectation_id, []).append(event_id)
    return found


def group_parts(conn: Connection, group_ids: Sequence[str]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for chunk in chunks(sorted(set(group_ids))):
        for row in conn.execute(
            select(expectation_parts)
            .where(expectation_parts.c.group_id.in_(chunk))
            .order_by(expectation_parts.c.event_id)
        ):
            found.setdefault(row.group_id, []).append(row)
    return found


def release(conn: Connection, record_ids: Sequence[int], group_id: str | None) -> None:
    """Let go of the events a cancelled sum took, so they are free for other records."""
    condition = (
        expectation_parts.c.group_id == group_id
        if group_id is not None
        else expectation_parts.c.expectation_id.in_(list(record_ids))
    )
    conn.execute(delete(expectation_parts).where(condition))


def group_rows(conn: Connection, group_id: str) -> list[Any]:
    return list(
        conn.execute(
            select(expectations)
            .where(expectations.c.group_id == group_id)
            .order_by(expectations.c.deadline_ledger, expectations.c.external_id)
        )
    )
