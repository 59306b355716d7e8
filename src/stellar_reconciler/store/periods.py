"""Periods: what a proof of a ledger range is made of, and ranges closed with a proof.

A proof's material (ledger headers, events, settled records) is read in one snapshot, so
its parts agree with each other. Closing a period records the Merkle roots of its events
and headers; every repair of stored ledgers (store.replace_range, store.fill_gap) compares
the closed periods it touches with their roots, in the repair's own transaction, and opens a
`closed_period_changed` discrepancy naming the period and both roots when they no longer
hold (and resolves it when a later repair brings them back).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, insert, or_, select
from sqlalchemy.exc import IntegrityError

from stellar_reconciler.errors import ProofRangeError
from stellar_reconciler.merkle import EVENT_LEAF_FIELDS, events_root, headers_root
from stellar_reconciler.models import iso_utc
from stellar_reconciler.store.database import (
    read_connection,
    snapshot_connection,
    write_transaction,
)
from stellar_reconciler.store.discrepancies import Discrepancies, NewDiscrepancy
from stellar_reconciler.store.schema import (
    checkpoints,
    closed_periods,
    events,
    expectations,
    ledgers,
    network,
)

PENDING = "pending"
# The columns of a settled expected record a proof shows: what was expected and the verdict.
RECORD_COLUMNS = (
    "external_id",
    "contract_id",
    "event_name",
    "tx_hash",
    "topics",
    "amount",
    "tolerance",
    "deadline_ledger",
    "status",
    "event_id",
    "event_ledger",
    "found_amount",
    "difference",
    "settled_at",
)


@dataclass(frozen=True, slots=True)
class ProofMaterial:
    """A range's stored history as a proof shows it; every list in id (or sequence) order."""

    first_ledger: int
    last_ledger: int
    headers: list[dict[str, Any]]
    events: list[dict[str, Any]]
    records: list[dict[str, Any]]
    network_passphrase: str | None
    filter_fingerprint: str | None
    period: dict[str, Any] | None


def header_json(row: Any) -> dict[str, Any]:
    return {
        "sequence": int(row.sequence),
        "hash": row.hash,
        "previous_hash": row.previous_hash,
        "closed_at": iso_utc(row.closed_at),
        "event_count": int(row.event_count),
    }


def _event_json(row: Any) -> dict[str, Any]:
    found = {name: getattr(row, name) for name in EVENT_LEAF_FIELDS}
    found["ledger"] = int(found["ledger"])
    found["topics_xdr"] = list(found["topics_xdr"])
    return found


def _record_json(row: Any) -> dict[str, Any]:
    found = {name: getattr(row, name) for name in RECORD_COLUMNS}
    found["settled_at"] = iso_utc(row.settled_at)
    for name in ("deadline_ledger", "event_ledger"):
        found[name] = int(found[name]) if found[name] is not None else None
    return found


def period_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "first_ledger": int(row.first_ledger),
        "last_ledger": int(row.last_ledger),
        "events_root": row.events_root,
        "event_count": row.event_count,
        "headers_root": row.headers_root,
        "closed_at": iso_utc(row.closed_at),
        "closed_by": row.closed_by,
    }


def _headers(conn: Connection, first: int, last: int) -> list[dict[str, Any]]:
    query = select(ledgers).where(ledgers.c.sequence.between(first, last))
    return [header_json(r) for r in conn.execute(query.order_by(ledgers.c.sequence))]


def _events(conn: Connection, first: int, last: int) -> list[dict[str, Any]]:
    query = select(*(events.c[name] for name in EVENT_LEAF_FIELDS)).where(
        events.c.ledger.between(first, last)
    )
    return [_event_json(r) for r in conn.execute(query.order_by(events.c.id))]


def _records(conn: Connection, first: int, last: int) -> list[dict[str, Any]]:
    """Records settled in the range: by an event of it, or missed with a deadline in it."""
    query = select(*(expectations.c[name] for name in RECORD_COLUMNS)).where(
        expectations.c.status != PENDING,
        or_(
            expectations.c.event_ledger.between(first, last),
            and_(
                expectations.c.event_id.is_(None),
                expectations.c.deadline_ledger.between(first, last),
            ),
        ),
    )
    return [_record_json(r) for r in conn.execute(query.order_by(expectations.c.external_id))]


def _check_indexed(
    first: int, last: int, checkpoint: int | None, headers: list[dict[str, Any]]
) -> None:
    if first > last:
        raise ProofRangeError(f"the range {first}-{last} is empty: --from must not be after --to")
    if checkpoint is None:
        raise ProofRangeError("nothing is indexed yet: there is no range to prove")
    if last > checkpoint:
        raise ProofRangeError(
            f"ledger {last} is not indexed yet (indexed through {checkpoint}); choose a range "
            "that ends at or before it"
        )
    present = {h["sequence"] for h in headers}
    missing = next((s for s in range(first, last + 1) if s not in present), None)
    if missing is not None:
        raise ProofRangeError(
            f"ledger {missing} is not stored, so {first}-{last} cannot be proven; fill the gap "
            f"with `reconciler verify --from {missing} --to {last}` or choose a range of stored "
            "ledgers (GET /api/gaps lists what is missing)"
        )


class Periods:
    def __init__(self, engine: Engine, stream: str, discrepancies: Discrepancies) -> None:
        self.engine = engine
        self.stream = stream
        self.discrepancies = discrepancies

    def material(self, first: int, last: int) -> ProofMaterial:
        """The range's proof material, read in one snapshot. ProofRangeError when the range
        is not wholly indexed (a gap, or beyond the checkpoint)."""
        with snapshot_connection(self.engine) as conn:
            checkpoint = conn.execute(
                select(checkpoints.c.ledger, checkpoints.c.filter_fingerprint).where(
                    checkpoints.c.stream == self.stream
                )
            ).one_or_none()
            found = _headers(conn, first, last)
            _check_indexed(first, last, checkpoint.ledger if checkpoint else None, found)
            passphrase = conn.execute(select(network.c.passphrase)).scalar_one_or_none()
            period = conn.execute(
                select(closed_periods).where(
                    closed_periods.c.first_ledger == first, closed_periods.c.last_ledger == last
                )
            ).one_or_none()
            return ProofMaterial(
                first_ledger=first,
                last_ledger=last,
                headers=found,
                events=_events(conn, first, last),
                records=_records(conn, first, last),
                network_passphrase=passphrase,
                filter_fingerprint=checkpoint.filter_fingerprint if checkpoint else None,
                period=period_json(period) if period is not None else None,
            )

    def close(self, first: int, last: int, closed_by: str) -> tuple[dict[str, Any], bool]:
        """Record the range's roots as they stand; (the period, newly closed). A period
        already closed is returned as it was recorded, never re-rooted."""
        try:
            with write_transaction(self.engine) as conn:
                existing = self._closed(conn, first, last)
                if existing is not None:
                    return period_json(existing), False
                checkpoint = conn.execute(
                    select(checkpoints.c.ledger).where(checkpoints.c.stream == self.stream)
                ).scalar_one_or_none()
                found = _headers(conn, first, last)
                _check_indexed(first, last, checkpoint, found)
                leaves = _events(conn, first, last)
                conn.execute(
                    insert(closed_periods).values(
                        first_ledger=first,
                        last_ledger=last,
                        events_root=events_root(leaves),
                        event_count=len(leaves),
                        headers_root=headers_root(found),
                        closed_at=datetime.now(UTC),
                        closed_by=closed_by[:64],
                    )
                )
                return period_json(self._closed(conn, first, last)), True
        except IntegrityError:
            # Closed by someone else meanwhile (PostgreSQL lets both read "not closed").
            with read_connection(self.engine) as conn:
                return period_json(self._closed(conn, first, last)), False

    def listing(self) -> list[dict[str, Any]]:
        with read_connection(self.engine) as conn:
            rows = conn.execute(select(closed_periods).order_by(closed_periods.c.first_ledger))
            return [period_json(r) for r in rows]

    @staticmethod
    def _closed(conn: Connection, first: int, last: int) -> Any:
        return conn.execute(
            select(closed_periods).where(
                closed_periods.c.first_ledger == first, closed_periods.c.last_ledger == last
            )
        ).one_or_none()

    def after_repair(self, conn: Connection, first: int, last: int) -> None:
        """Inside a repair's transaction, after it wrote first..last: compare every closed
        period overlapping the range with its recorded roots."""
        touched = conn.execute(
            select(closed_periods).where(
                closed_periods.c.first_ledger <= last, closed_periods.c.last_ledger >= first
            )
        ).all()
        for period in touched:
            self._compare(conn, period)

    def _compare(self, conn: Connection, period: Any) -> None:
        low, high = int(period.first_ledger), int(period.last_ledger)
        leaves = _events(conn, low, high)
        now = {"events_root": events_root(leaves), "event_count": len(leaves)}
        now["headers_root"] = headers_root(_headers(conn, low, high))
        then = {name: getattr(period, name) for name in now}
        key = f"closed_period_changed:{period.id}"
        if now == then:
            self.discrepancies.resolve_key(
                key, "auto", "a later repair brought back the roots recorded at the close", conn
            )
            return
        changed = [name for name in ("events_root", "headers_root") if now[name] != then[name]]
        message = (
            f"ledgers {low}-{high} were closed as a period on {iso_utc(period.closed_at)} with "
            + ", ".join(f"{name} {then[name]}" for name in changed)
            + "; a repair has changed them to "
            + ", ".join(f"{name} {now[name]}" for name in changed)
            + ". Proofs exported before no longer match the stored history: compare the two "
            "with `reconciler proof export` and the bundle given out, and resolve this "
            "discrepancy with a note once the change is understood"
        )
        record = NewDiscrepancy(
            kind="closed_period_changed",
            key=key,
            message=message,
            first_ledger=low,
            last_ledger=high,
            subject=f"period {period.id}",
            expected={"period": period.id, **then},
            found={"period": period.id, **now},
        )
        opened, newly = self.discrepancies.open(record, conn)
        if not newly:
            self.discrepancies.set_found(opened, record.found, conn)
