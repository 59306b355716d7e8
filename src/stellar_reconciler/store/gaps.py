"""Gaps: missing ledger runs (found in SQL), and ledgers an operator accepted as lost.

Accepting a loss is a two-step affair on purpose: the operator records a consent, and the
worker carries it out when it next meets the gap, because the RPC's retention window slides
one ledger per close and only then is the exact range known.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, and_, insert, select, text, update

from stellar_reconciler.models import AcknowledgedGap
from stellar_reconciler.reconcile import Range, subtract_ranges
from stellar_reconciler.store.checkpoint import advance
from stellar_reconciler.store.database import read_connection, write_transaction
from stellar_reconciler.store.discrepancies import AuditLog, Discrepancies
from stellar_reconciler.store.schema import acknowledged_gaps, gap_consents

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


@dataclass(frozen=True, slots=True)
class GapConsent:
    id: int
    through_ledger: int | None
    note: str
    requested_by: str


def as_utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class Gaps:
    def __init__(
        self, engine: Engine, stream: str, discrepancies: Discrepancies, audit: AuditLog
    ) -> None:
        self.engine = engine
        self.stream = stream
        self.discrepancies = discrepancies
        self.audit = audit

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

    def consent(
        self, through: int | None, note: str, by: str, remote_addr: str | None = None
    ) -> int:
        """Record an operator's consent to skip lost ledgers up to `through` (None: whatever
        the retention window has lost when the worker next resumes)."""
        with write_transaction(self.engine) as conn:
            inserted = conn.execute(
                insert(gap_consents).values(
                    stream=self.stream,
                    through_ledger=through,
                    note=note,
                    requested_by=by[:64],
                    requested_at=datetime.now(UTC),
                )
            )
            key = inserted.inserted_primary_key
            assert key is not None
            detail = {"through": through, "note": note}
            self.audit.record(by, "consent_to_gap", self.stream, detail, remote_addr, conn=conn)
            return int(key[0])

    def pending_consent(self) -> GapConsent | None:
        with read_connection(self.engine) as conn:
            row = conn.execute(
                select(gap_consents)
                .where(
                    and_(gap_consents.c.stream == self.stream, gap_consents.c.consumed_at.is_(None))
                )
                .order_by(gap_consents.c.id.desc())
                .limit(1)
            ).one_or_none()
        if row is None:
            return None
        return GapConsent(row.id, row.through_ledger, row.note, row.requested_by)

    def acknowledge(self, first: int, last: int, consent: GapConsent) -> AcknowledgedGap:
        """Skip ledgers first..last as lost, carrying out `consent`: checkpoint, record, consent
        and the retention_gap discrepancy all change in one transaction."""
        now = datetime.now(UTC)
        with write_transaction(self.engine) as conn:
            advance(conn, self.stream, first - 1, last)
            conn.execute(
                insert(acknowledged_gaps).values(
                    stream=self.stream,
                    first_ledger=first,
                    last_ledger=last,
                    acknowledged_at=now,
                    note=f"{consent.note} (by {consent.requested_by})",
                )
            )
            conn.execute(
                update(gap_consents).where(gap_consents.c.id == consent.id).values(consumed_at=now)
            )
            self.discrepancies.resolve_key(
                f"retention_gap:checkpoint:{first}",
                consent.requested_by,
                f"ledgers {first}-{last} accepted as lost: {consent.note}",
                conn,
            )
        return AcknowledgedGap(first, last, now, consent.note)

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
