"""Discrepancies and the audit log: the records of what did not agree and who changed what.

Every method takes an optional connection so a repair and the record of it can share one
transaction; without one, each call is its own transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, select, update

from stellar_reconciler.models import iso_utc
from stellar_reconciler.store.bulk import chunks, insert_many
from stellar_reconciler.store.database import read_connection, write_transaction
from stellar_reconciler.store.schema import audit_log, discrepancies

KINDS = (
    "chain_break",
    "gap",
    "retention_gap",
    "source_mismatch",
    "missing_expected",
    "amount_mismatch",
    "unexpected",
    # A repair changed the events (or ledger headers) of a period closed with a proof.
    "closed_period_changed",
    "failed_on_chain",
    "not_found",
    # A contract's events under one name changed shape (a contract upgrade): store/shapes.py.
    "shape_changed",
    "amount_unreadable",
)
# Open discrepancies of these kinds mean the stored history cannot be trusted: health is 503.
BLOCKING_KINDS = frozenset({"chain_break", "source_mismatch"})
# What of a key the column holds: two keys alike this far name the same problem.
KEY_LENGTH = 200


def stored_key(key: str) -> str:
    """The key as the discrepancies table holds it; every lookup by key goes through here."""
    return key[:KEY_LENGTH]


@dataclass(frozen=True, slots=True)
class NewDiscrepancy:
    kind: str
    key: str
    message: str
    first_ledger: int | None = None
    last_ledger: int | None = None
    subject: str | None = None
    expected: Any = None
    found: Any = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown discrepancy kind {self.kind!r}")


def discrepancy_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "open": row.resolved_at is None,
        "first_ledger": row.first_ledger,
        "last_ledger": row.last_ledger,
        "subject": row.subject,
        "message": row.message,
        "expected": row.expected,
        "found": row.found,
        "detected_at": iso_utc(row.detected_at),
        "resolved_at": iso_utc(row.resolved_at),
        "resolved_by": row.resolved_by,
        "resolution": row.resolution,
    }


def open_all(conn: Connection, found: Sequence[NewDiscrepancy]) -> int:
    """Open each discrepancy unless one is already open under the same stored key, inside the
    caller's transaction; returns how many were opened. The one implementation of "unless
    already open": a batch can raise thousands at once (every unclaimed event of a watched
    contract), so the open keys are read in chunks and the new rows go in one statement."""
    by_key: dict[str, NewDiscrepancy] = {}
    for new in found:
        by_key.setdefault(stored_key(new.key), new)
    already: set[str] = set()
    for chunk in chunks(list(by_key)):
        already.update(
            conn.execute(
                select(discrepancies.c.key).where(
                    discrepancies.c.key.in_(chunk), discrepancies.c.resolved_at.is_(None)
                )
            ).scalars()
        )
    now = datetime.now(UTC)
    rows = [
        {
            "kind": new.kind,
            "key": key,
            "message": new.message,
            "first_ledger": new.first_ledger,
            "last_ledger": new.last_ledger,
            "subject": new.subject,
            "expected": new.expected,
            "found": new.found,
            "detected_at": now,
            "notify_attempts": 0,
        }
        for key, new in by_key.items()
        if key not in already
    ]
    insert_many(conn, discrepancies, rows)
    return len(rows)


class Discrepancies:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _tx(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
            return
        with write_transaction(self.engine) as own:
            yield own

    def open(self, new: NewDiscrepancy, conn: Connection | None = None) -> tuple[int, bool]:
        """Record a discrepancy unless the same one is already open; (id, newly opened)."""
        with self._tx(conn) as tx:
            newly_opened = open_all(tx, [new]) == 1
            found = tx.execute(
                select(discrepancies.c.id).where(
                    and_(
                        discrepancies.c.key == stored_key(new.key),
                        discrepancies.c.resolved_at.is_(None),
                    )
                )
            ).scalar_one()
            return int(found), newly_opened

    def resolve(
        self, discrepancy_id: int, by: str, resolution: str, conn: Connection | None = None
    ) -> bool:
        """Close an open discrepancy; False when it is unknown or already closed."""
        with self._tx(conn) as tx:
            moved = tx.execute(
                update(discrepancies)
                .where(
                    and_(
                        discrepancies.c.id == discrepancy_id, discrepancies.c.resolved_at.is_(None)
                    )
                )
                .values(resolved_at=datetime.now(UTC), resolved_by=by[:64], resolution=resolution)
            ).rowcount
        return bool(moved)

    def set_found(self, discrepancy_id: int, found: Any, conn: Connection | None = None) -> None:
        """Replace what a discrepancy says was found (a repair's progress, say)."""
        with self._tx(conn) as tx:
            tx.execute(
                update(discrepancies)
                .where(discrepancies.c.id == discrepancy_id)
                .values(found=found)
            )

    def resolve_key(
        self, key: str, by: str, resolution: str, conn: Connection | None = None
    ) -> int:
        with self._tx(conn) as tx:
            return int(
                tx.execute(
                    update(discrepancies)
                    .where(
                        and_(
                            discrepancies.c.key == stored_key(key),
                            discrepancies.c.resolved_at.is_(None),
                        )
                    )
                    .values(
                        resolved_at=datetime.now(UTC), resolved_by=by[:64], resolution=resolution
                    )
                ).rowcount
            )

    def open_keys(self, kind: str, first: int, last: int) -> list[tuple[str, int]]:
        """Keys and first ledgers of the open discrepancies of `kind` starting in first..last."""
        with read_connection(self.engine) as conn:
            rows = conn.execute(
                select(discrepancies.c.key, discrepancies.c.first_ledger).where(
                    discrepancies.c.kind == kind,
                    discrepancies.c.resolved_at.is_(None),
                    discrepancies.c.first_ledger.between(first, last),
                )
            )
            return [(str(key), int(ledger)) for key, ledger in rows]

    def get(self, discrepancy_id: int) -> dict[str, Any] | None:
        with read_connection(self.engine) as conn:
            row = conn.execute(
                select(discrepancies).where(discrepancies.c.id == discrepancy_id)
            ).one_or_none()
        return discrepancy_json(row) if row is not None else None

    def listing(
        self,
        kind: str | None = None,
        is_open: bool | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first."""
        query = select(discrepancies).order_by(discrepancies.c.id.desc()).limit(limit)
        if kind is not None:
            query = query.where(discrepancies.c.kind == kind)
        if is_open is True:
            query = query.where(discrepancies.c.resolved_at.is_(None))
        elif is_open is False:
            query = query.where(discrepancies.c.resolved_at.is_not(None))
        if before_id is not None:
            query = query.where(discrepancies.c.id < before_id)
        with read_connection(self.engine) as conn:
            return [discrepancy_json(r) for r in conn.execute(query)]

    def open_counts(self) -> dict[str, int]:
        """Open discrepancies per kind, every kind present (zero when none)."""
        counts = dict.fromkeys(KINDS, 0)
        with read_connection(self.engine) as conn:
            rows = conn.execute(
                select(discrepancies.c.kind, func.count())
                .where(discrepancies.c.resolved_at.is_(None))
                .group_by(discrepancies.c.kind)
            )
            for kind, count in rows:
                counts[kind] = int(count)
        return counts

    def undelivered_count(self, max_attempts: int = 20) -> int:
        """How many discrepancies still wait for their webhook (the outbox's length)."""
        with read_connection(self.engine) as conn:
            count = conn.execute(
                select(func.count()).where(
                    discrepancies.c.notified_at.is_(None),
                    discrepancies.c.notify_attempts < max_attempts,
                )
            ).scalar_one()
        return int(count)

    def undelivered(self, limit: int = 50, max_attempts: int = 20) -> list[dict[str, Any]]:
        """Discrepancies whose webhook has not been delivered yet, oldest first."""
        with read_connection(self.engine) as conn:
            rows = conn.execute(
                select(discrepancies)
                .where(
                    and_(
                        discrepancies.c.notified_at.is_(None),
                        discrepancies.c.notify_attempts < max_attempts,
                    )
                )
                .order_by(discrepancies.c.id)
                .limit(limit)
            )
            return [discrepancy_json(r) for r in rows]

    def unpublished(self, limit: int) -> list[dict[str, Any]]:
        """Discrepancies not yet published to NATS, oldest first."""
        with read_connection(self.engine) as conn:
            rows = conn.execute(
                select(discrepancies)
                .where(discrepancies.c.published_at.is_(None))
                .order_by(discrepancies.c.id)
                .limit(limit)
            )
            return [discrepancy_json(r) for r in rows]

    def mark_published(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(discrepancies)
                .where(discrepancies.c.id.in_(list(ids)))
                .values(published_at=datetime.now(UTC))
            )

    def mark_notified(self, discrepancy_id: int, delivered: bool) -> None:
        values: dict[str, Any] = {"notify_attempts": discrepancies.c.notify_attempts + 1}
        if delivered:
            values["notified_at"] = datetime.now(UTC)
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(discrepancies).where(discrepancies.c.id == discrepancy_id).values(**values)
            )


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(
        self,
        actor: str,
        action: str,
        target: str | None = None,
        detail: Any = None,
        remote_addr: str | None = None,
        conn: Connection | None = None,
    ) -> None:
        values = {
            "at": datetime.now(UTC),
            "actor": actor[:64],
            "action": action[:64],
            "target": target[:200] if target else None,
            "detail": detail,
            "remote_addr": remote_addr,
        }
        if conn is not None:
            conn.execute(insert(audit_log).values(**values))
            return
        with write_transaction(self.engine) as own:
            own.execute(insert(audit_log).values(**values))

    def listing(self, limit: int = 100) -> list[dict[str, Any]]:
        with read_connection(self.engine) as conn:
            rows = conn.execute(select(audit_log).order_by(audit_log.c.id.desc()).limit(limit))
            return [
                {
                    "id": r.id,
                    "at": iso_utc(r.at),
                    "actor": r.actor,
                    "action": r.action,
                    "target": r.target,
                    "detail": r.detail,
                    "remote_addr": r.remote_addr,
                }
                for r in rows
            ]
