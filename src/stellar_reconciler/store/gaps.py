"""Gaps: missing ledger runs (found in SQL), the retention gap the worker is stopped at,
and ledgers an operator accepted as lost (the consents that accept them: consents.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, select, text, update

from stellar_reconciler.models import AcknowledgedGap, as_utc
from stellar_reconciler.reconcile import Range, subtract_ranges
from stellar_reconciler.store.database import read_connection, write_transaction
from stellar_reconciler.store.discrepancies import Discrepancies, NewDiscrepancy
from stellar_reconciler.store.schema import (
    acknowledged_gaps,
    checkpoints,
    discrepancies,
    ledgers,
)

# Runs of missing sequences between stored ledgers, found by the database in one pass.
_GAPS_SQL = text(
    """
    SELECT sequence + 1 AS first_missing, next_sequence - 1 AS last_missing
    FROM (
        SELECT sequence, LEAD(sequence) OVER (ORDER BY sequence) AS next_sequence
        FROM ledgers
        WHERE sequence BETWEEN :low AND :high
    ) AS neighbours
    WHERE next_sequence > sequence + 1
    ORDER BY sequence
    """
)


def retention_gap_key(first_missing: int) -> str:
    # Keyed on where the worker stopped: the range's end slides with the window.
    return f"retention_gap:checkpoint:{first_missing}"


@dataclass(frozen=True, slots=True)
class PendingGap:
    """The retention gap the worker is stopped at (its end as last seen; it slides)."""

    first_ledger: int
    last_ledger: int
    discrepancy_id: int

    def as_json(self) -> dict[str, Any]:
        return {
            "first_ledger": self.first_ledger,
            "last_ledger": self.last_ledger,
            "discrepancy_id": self.discrepancy_id,
        }


def stream_checkpoint(conn: Connection, stream: str) -> int | None:
    ledger = conn.execute(
        select(checkpoints.c.ledger).where(checkpoints.c.stream == stream)
    ).scalar_one_or_none()
    return None if ledger is None else int(ledger)


def pending_gap_at(conn: Connection, checkpoint: int | None) -> PendingGap | None:
    """The retention gap the worker waits at, given the checkpoint (read in `conn`)."""
    if checkpoint is None:
        return None
    row = conn.execute(
        select(discrepancies.c.id, discrepancies.c.last_ledger).where(
            and_(
                discrepancies.c.key == retention_gap_key(checkpoint + 1),
                discrepancies.c.resolved_at.is_(None),
            )
        )
    ).one_or_none()
    if row is None:
        return None
    first = checkpoint + 1
    last = first if row.last_ledger is None else int(row.last_ledger)
    return PendingGap(first, last, int(row.id))


class Gaps:
    def __init__(self, engine: Engine, stream: str, discrepancies: Discrepancies) -> None:
        self.engine = engine
        self.stream = stream
        self.discrepancies = discrepancies

    def find(self, low: int | None = None, high: int | None = None) -> list[Range]:
        """Missing ledger runs between the first and last stored ledger (or low..high),
        leaving out ranges an operator accepted as lost."""
        with read_connection(self.engine) as conn:
            rows = conn.execute(
                _GAPS_SQL, {"low": low if low is not None else 0, "high": high or 2**62}
            ).all()
        found = [(int(a), int(b)) for a, b in rows]
        accepted = [(g.first_ledger, g.last_ledger) for g in self.acknowledged()]
        return subtract_ranges(found, accepted)

    def missing(self, low: int, high: int) -> list[Range]:
        """Every run of ledgers low..high that is not stored, the ends of the range included
        and ranges accepted as lost too (a backfill may still find them)."""
        with read_connection(self.engine) as conn:
            rows = conn.execute(_GAPS_SQL, {"low": low, "high": high}).all()
            first, last = conn.execute(
                select(func.min(ledgers.c.sequence), func.max(ledgers.c.sequence)).where(
                    ledgers.c.sequence.between(low, high)
                )
            ).one()
        if first is None:
            return [(low, high)]
        runs = [(int(a), int(b)) for a, b in rows]
        if first > low:
            runs.insert(0, (low, int(first) - 1))
        if last < high:
            runs.append((int(last) + 1, high))
        return runs

    # --- the gap the worker is stopped at --------------------------------------------------

    def report_retention_gap(self, first: int, last: int, message: str) -> bool:
        """Record that ledgers first..last are lost from the RPC and the worker waits at
        `first`; the open discrepancy keeps the newest end. True when newly opened."""
        found = {"oldest_available_ledger": last + 1}
        with write_transaction(self.engine) as conn:
            discrepancy_id, opened = self.discrepancies.open(
                NewDiscrepancy(
                    kind="retention_gap",
                    key=retention_gap_key(first),
                    message=message,
                    first_ledger=first,
                    last_ledger=last,
                    expected={"next_ledger": first},
                    found=found,
                ),
                conn,
            )
            if not opened:
                conn.execute(
                    update(discrepancies)
                    .where(
                        and_(
                            discrepancies.c.id == discrepancy_id,
                            discrepancies.c.last_ledger != last,
                        )
                    )
                    .values(last_ledger=last, message=message, found=found)
                )
        return opened

    def resolve_filled(self, source: str) -> list[Range]:
        """Resolve every open retention_gap whose ledgers are all stored now (filled from
        `source`, the data lake say), saying so; the ranges resolved. One whose range is
        only partly stored stays open until the rest is filled."""
        resolved: list[Range] = []
        with write_transaction(self.engine) as conn:
            rows = conn.execute(
                select(
                    discrepancies.c.id, discrepancies.c.first_ledger, discrepancies.c.last_ledger
                ).where(
                    and_(
                        discrepancies.c.kind == "retention_gap",
                        discrepancies.c.resolved_at.is_(None),
                        discrepancies.c.first_ledger.is_not(None),
                        discrepancies.c.last_ledger.is_not(None),
                    )
                )
            ).all()
            for row in rows:
                first, last = int(row.first_ledger), int(row.last_ledger)
                stored = conn.execute(
                    select(func.count())
                    .select_from(ledgers)
                    .where(ledgers.c.sequence.between(first, last))
                ).scalar_one()
                if stored != last - first + 1:
                    continue
                self.discrepancies.resolve(
                    int(row.id),
                    "auto",
                    f"filled from {source}: ledgers {first}-{last} are stored now, one "
                    "transaction per batch, each ledger hash-checked and chained to the one "
                    "before it",
                    conn,
                )
                resolved.append((first, last))
        return resolved

    def pending_gap(self) -> PendingGap | None:
        with read_connection(self.engine) as conn:
            return pending_gap_at(conn, stream_checkpoint(conn, self.stream))

    def acknowledged(self) -> list[AcknowledgedGap]:
        with read_connection(self.engine) as conn:
            rows = conn.execute(
                select(acknowledged_gaps)
                .where(acknowledged_gaps.c.stream == self.stream)
                .order_by(acknowledged_gaps.c.first_ledger)
            )
            return [
                AcknowledgedGap(r.first_ledger, r.last_ledger, as_utc(r.acknowledged_at), r.note)
                for r in rows
            ]
