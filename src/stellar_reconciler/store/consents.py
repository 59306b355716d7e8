"""Gap consents: an operator's consent to lose the ledgers of one retention gap.

Accepting a loss is a two-step affair on purpose: when the worker stops at a retention gap,
the operator records a consent that names that gap, and the worker carries it out at its
next poll, because the RPC's retention window slides one ledger per close and only then is
the exact range known. A consent applies to the gap it names and to no other, so one given
when nothing is missing is refused instead of waiting to skip ledgers nobody has seen. These
rules live here once, for the command line and the API alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from stellar_reconciler.errors import GapConsentNotFoundError, GapConsentRefusedError
from stellar_reconciler.models import AcknowledgedGap, iso_utc
from stellar_reconciler.plan import Consent
from stellar_reconciler.store.checkpoint import advance
from stellar_reconciler.store.database import read_connection, write_transaction
from stellar_reconciler.store.discrepancies import AuditLog, Discrepancies, NewDiscrepancy
from stellar_reconciler.store.gaps import pending_gap_at, retention_gap_key, stream_checkpoint
from stellar_reconciler.store.schema import (
    acknowledged_gaps,
    checkpoints,
    discrepancies,
    gap_consents,
)

_LIVE = and_(gap_consents.c.consumed_at.is_(None), gap_consents.c.revoked_at.is_(None))


def _consent_state(row: Any, checkpoint: int | None) -> str:
    if row.consumed_at is not None:
        return "used"
    if row.revoked_at is not None:
        return "revoked"
    if checkpoint is not None and row.first_ledger == checkpoint + 1:
        return "pending"
    # The worker is no longer at the gap it names (or it names none): it will never apply.
    return "expired"


def _covers(row: Any) -> str:
    if row.consumed_at is not None:
        return f"ledgers {row.first_ledger}-{row.last_ledger}, skipped as lost"
    if row.first_ledger is None:
        return "no named gap (recorded before consents named one); never carried out"
    limit = "the RPC's oldest" if row.through_ledger is None else f"ledger {row.through_ledger}"
    return (
        f"ledgers from {row.first_ledger} up to {limit} when the worker resumes, "
        "never one the RPC still has"
    )


def consent_json(row: Any, checkpoint: int | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "state": _consent_state(row, checkpoint),
        "first_ledger": row.first_ledger,
        "through_ledger": row.through_ledger,
        "through_oldest": row.through_ledger is None,
        "covers": _covers(row),
        "skipped": (
            {"first_ledger": row.first_ledger, "last_ledger": row.last_ledger}
            if row.consumed_at is not None
            else None
        ),
        "note": row.note,
        "requested_by": row.requested_by,
        "requested_at": iso_utc(row.requested_at),
        "consumed_at": iso_utc(row.consumed_at),
        "revoked_at": iso_utc(row.revoked_at),
        "revoked_by": row.revoked_by,
    }


class GapConsents:
    def __init__(
        self, engine: Engine, stream: str, discrepancies: Discrepancies, audit: AuditLog
    ) -> None:
        self.engine = engine
        self.stream = stream
        self.discrepancies = discrepancies
        self.audit = audit

    def give(
        self, through: int | None, note: str, by: str, remote_addr: str | None = None
    ) -> dict[str, Any]:
        """Record an operator's consent to lose the ledgers of the retention gap the worker is
        stopped at, up to `through` (None: whatever the RPC has lost when the worker resumes).
        Raises GapConsentRefusedError when there is no such gap or it already has a consent."""
        try:
            with write_transaction(self.engine) as conn:
                checkpoint = stream_checkpoint(conn, self.stream)
                gap = pending_gap_at(conn, checkpoint)
                if gap is None:
                    raise GapConsentRefusedError(_no_gap_message(checkpoint))
                live = conn.execute(
                    select(gap_consents.c.id).where(
                        and_(
                            gap_consents.c.stream == self.stream,
                            gap_consents.c.first_ledger == gap.first_ledger,
                            _LIVE,
                        )
                    )
                ).scalar_one_or_none()
                if live is not None:
                    raise GapConsentRefusedError(_duplicate_message(int(live), gap.first_ledger))
                if through is not None and through < gap.first_ledger:
                    raise GapConsentRefusedError(
                        f"through ledger {through} is before the gap, which starts at ledger "
                        f"{gap.first_ledger}: give a ledger of at least {gap.first_ledger}, or "
                        "accept everything the RPC has lost (through_oldest / --through-oldest)"
                    )
                inserted = conn.execute(
                    insert(gap_consents).values(
                        stream=self.stream,
                        first_ledger=gap.first_ledger,
                        through_ledger=through,
                        note=note,
                        requested_by=by[:64],
                        requested_at=datetime.now(UTC),
                    )
                )
                key = inserted.inserted_primary_key
                assert key is not None
                consent_id = int(key[0])
                detail = {
                    "consent_id": consent_id,
                    "first_ledger": gap.first_ledger,
                    "through": through,
                    "note": note,
                }
                self.audit.record(by, "consent_to_gap", self.stream, detail, remote_addr, conn=conn)
                row = conn.execute(
                    select(gap_consents).where(gap_consents.c.id == consent_id)
                ).one()
                return consent_json(row, checkpoint)
        except IntegrityError as exc:
            # Another consent for the same gap committed between our check and insert.
            raise GapConsentRefusedError(
                "another consent for this gap was recorded at the same moment; "
                "GET /api/gaps shows it"
            ) from exc

    def pending(self) -> Consent | None:
        """The live consent (neither carried out nor revoked) that names the gap starting
        just after the checkpoint, if any."""
        next_ledger = (
            select(checkpoints.c.ledger + 1)
            .where(checkpoints.c.stream == self.stream)
            .scalar_subquery()
        )
        with read_connection(self.engine) as conn:
            row = conn.execute(
                select(gap_consents).where(
                    and_(
                        gap_consents.c.stream == self.stream,
                        gap_consents.c.first_ledger == next_ledger,
                        _LIVE,
                    )
                )
            ).one_or_none()
        if row is None:
            return None
        return Consent(row.id, row.first_ledger, row.through_ledger, row.requested_by)

    def listing(self, limit: int = 100) -> list[dict[str, Any]]:
        """Every consent with its state (pending, used, expired, revoked), newest first."""
        with read_connection(self.engine) as conn:
            checkpoint = stream_checkpoint(conn, self.stream)
            rows = conn.execute(
                select(gap_consents)
                .where(gap_consents.c.stream == self.stream)
                .order_by(gap_consents.c.id.desc())
                .limit(limit)
            )
            return [consent_json(row, checkpoint) for row in rows]

    def revoke(self, consent_id: int, by: str, remote_addr: str | None = None) -> dict[str, Any]:
        """Withdraw a consent not carried out yet (pending or expired), with an audit entry."""
        with write_transaction(self.engine) as conn:
            row = conn.execute(
                select(gap_consents).where(
                    and_(gap_consents.c.id == consent_id, gap_consents.c.stream == self.stream)
                )
            ).one_or_none()
            if row is None:
                raise GapConsentNotFoundError(consent_id)
            if row.consumed_at is not None:
                raise GapConsentRefusedError(
                    f"gap consent {consent_id} was already carried out at "
                    f"{iso_utc(row.consumed_at)} (ledgers {row.first_ledger}-{row.last_ledger} "
                    "skipped); it cannot be withdrawn"
                )
            if row.revoked_at is not None:
                raise GapConsentRefusedError(
                    f"gap consent {consent_id} was already revoked by {row.revoked_by} at "
                    f"{iso_utc(row.revoked_at)}"
                )
            # The worker may carry it out at this very moment: only a live consent is revoked.
            moved = conn.execute(
                update(gap_consents)
                .where(and_(gap_consents.c.id == consent_id, _LIVE))
                .values(revoked_at=datetime.now(UTC), revoked_by=by[:64])
            ).rowcount
            if moved != 1:
                raise GapConsentRefusedError(
                    f"gap consent {consent_id} changed while it was being revoked; "
                    "GET /api/gaps shows its state"
                )
            detail = {"consent_id": consent_id}
            self.audit.record(by, "revoke_gap_consent", self.stream, detail, remote_addr, conn=conn)
            updated = conn.execute(
                select(gap_consents).where(gap_consents.c.id == consent_id)
            ).one()
            return consent_json(updated, stream_checkpoint(conn, self.stream))

    # --- carrying a consent out ------------------------------------------------------------

    def carry_out(self, first: int, last: int, consent_id: int) -> AcknowledgedGap | None:
        """Skip ledgers first..last as lost under consent `consent_id`: the consent, the
        checkpoint, the accepted range and the retention_gap discrepancy (resolved with who
        accepted it and when) change in one transaction. None, and nothing changed, when
        the consent was revoked meanwhile or does not name the gap starting at `first`."""
        now = datetime.now(UTC)
        with write_transaction(self.engine) as conn:
            taken = conn.execute(
                update(gap_consents)
                .where(
                    and_(
                        gap_consents.c.id == consent_id,
                        gap_consents.c.stream == self.stream,
                        gap_consents.c.first_ledger == first,
                        _LIVE,
                    )
                )
                .values(consumed_at=now, last_ledger=last)
            ).rowcount
            if taken != 1:
                return None
            consent = conn.execute(
                select(gap_consents).where(gap_consents.c.id == consent_id)
            ).one()
            advance(conn, self.stream, first - 1, last)
            who, when = consent.requested_by, iso_utc(consent.requested_at)
            conn.execute(
                insert(acknowledged_gaps).values(
                    stream=self.stream,
                    first_ledger=first,
                    last_ledger=last,
                    acknowledged_at=now,
                    note=f"{consent.note} (by {who}, consent {consent_id})",
                )
            )
            discrepancy_id, _ = self.discrepancies.open(
                NewDiscrepancy(
                    kind="retention_gap",
                    key=retention_gap_key(first),
                    message=f"ledgers {first}-{last} are older than the RPC's retention window",
                    first_ledger=first,
                    last_ledger=last,
                    expected={"next_ledger": first},
                    found={"oldest_available_ledger": last + 1},
                ),
                conn,
            )
            conn.execute(
                update(discrepancies)
                .where(discrepancies.c.id == discrepancy_id)
                .values(
                    first_ledger=first,
                    last_ledger=last,
                    resolved_at=now,
                    resolved_by=who,
                    resolution=(
                        f"accepted by {who} at {when}: ledgers {first}-{last} skipped as lost "
                        f"(consent {consent_id}: {consent.note})"
                    ),
                )
            )
        return AcknowledgedGap(first, last, now, consent.note)


def _no_gap_message(checkpoint: int | None) -> str:
    if checkpoint is None:
        return (
            "nothing is indexed yet, so there is no gap to accept; start the service, and if "
            "it stops at ledgers the RPC no longer keeps, /health names them"
        )
    return (
        f"no retention gap is pending: the worker is not stopped at lost ledgers (checkpoint "
        f"{checkpoint}), so there is nothing to accept. A consent names the gap it accepts: "
        "give it when /health reports a retention_gap (GET /api/gaps shows it too)"
    )


def _duplicate_message(consent_id: int, first: int) -> str:
    return (
        f"gap consent {consent_id} already accepts the gap from ledger {first}; the worker "
        f"carries it out at its next poll. To change it, revoke it first: "
        f"DELETE /api/gaps/consents/{consent_id}"
    )
