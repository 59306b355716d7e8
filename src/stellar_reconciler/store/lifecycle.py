"""The lifecycle of an expected record after it is posted: cancel it, move its deadline, or
try a list of records without storing them (a dry run).

Only a pending record changes. A cancelled one keeps its row (status `cancelled`, who and
when) so an audit can see it, and it never claims an event: matching reads pending records
only. Both changes take the settlement lock, so they never interleave with a batch's commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select, update

from stellar_reconciler.errors import (
    ExpectationDeadlineError,
    ExpectationNotFoundError,
    ExpectationSettledError,
)
from stellar_reconciler.expectation_spec import ExpectationSpec
from stellar_reconciler.matching import CANCELLED
from stellar_reconciler.partial import OPEN
from stellar_reconciler.store.bulk import chunks
from stellar_reconciler.store.database import rolled_back_transaction, write_transaction
from stellar_reconciler.store.expectations import Expectations, expectation_json
from stellar_reconciler.store.groups import member_of
from stellar_reconciler.store.outcomes import checkpoint_of
from stellar_reconciler.store.partials import release
from stellar_reconciler.store.schema import expectations
from stellar_reconciler.store.settlement import lock


@dataclass(frozen=True, slots=True)
class Changed:
    record: dict[str, Any]
    # False when the request changed nothing (cancelling a cancelled record again).
    changed: bool
    before: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DryRun:
    records: list[dict[str, Any]]
    created: int
    existing: int


class Lifecycle:
    def __init__(self, book: Expectations) -> None:
        self.book = book

    def _row(self, conn: Connection, external_id: str) -> Any:
        row = conn.execute(
            select(expectations).where(expectations.c.external_id == external_id)
        ).one_or_none()
        if row is None:
            raise ExpectationNotFoundError(external_id)
        return row

    def cancel(self, external_id: str, by: str) -> Changed:
        """Cancel a pending record (again: nothing changes); ExpectationSettledError when it
        settled already, ExpectationNotFoundError when there is none."""
        with write_transaction(self.book.engine) as conn:
            lock(conn)
            row = self._row(conn, external_id)
            if row.status == CANCELLED:
                return Changed(expectation_json(row), False, {})
            member_of(row, "be cancelled")
            if row.status not in OPEN:
                raise ExpectationSettledError(external_id, row.status, "be cancelled")
            # A partial record lets go of the instalments it took: free for other records.
            release(conn, [row.id], None)
            now = datetime.now(UTC)
            conn.execute(
                update(expectations)
                .where(expectations.c.id == row.id)
                .values(
                    status=CANCELLED,
                    cancelled_at=now,
                    cancelled_by=by,
                    settled_at=now,
                    candidate_event_id=None,
                    found_amount=None,
                    difference=None,
                    settled_amount=None,
                    blocked=False,
                    outcome_due=False,
                )
            )
            return Changed(expectation_json(self._row(conn, external_id)), True, {})

    def set_deadline(
        self, external_id: str, deadline_ledger: int | None, deadline_ledgers: int | None
    ) -> Changed:
        """Move a pending record's deadline (absolute, or counted from the checkpoint); it
        must lie after the last processed ledger, whose events were matched already."""
        with write_transaction(self.book.engine) as conn:
            lock(conn)
            row = self._row(conn, external_id)
            member_of(row, "change its deadline")
            if row.status not in OPEN:
                raise ExpectationSettledError(external_id, row.status, "change its deadline")
            if row.outcome_due:
                raise ExpectationSettledError(
                    external_id,
                    "past its deadline, waiting for its transaction's outcome",
                    "change its deadline",
                )
            checkpoint = checkpoint_of(conn, self.book.stream)
            if deadline_ledgers is not None:
                if checkpoint is None:
                    raise ExpectationDeadlineError(
                        "deadline_ledgers counts from the service's checkpoint, and no "
                        "ledger has been indexed yet; give deadline_ledger instead"
                    )
                deadline_ledger = checkpoint + deadline_ledgers
            if deadline_ledger is None:
                raise ExpectationDeadlineError("give deadline_ledger or deadline_ledgers")
            if checkpoint is not None and deadline_ledger <= checkpoint:
                raise ExpectationDeadlineError(
                    f"deadline_ledger {deadline_ledger} is not after ledger {checkpoint}, the "
                    "last one processed (its events were matched already); give a later "
                    "ledger, or cancel the record"
                )
            before = {
                "deadline_ledger": row.deadline_ledger,
                "deadline_ledgers": row.deadline_ledgers,
            }
            conn.execute(
                update(expectations)
                .where(expectations.c.id == row.id)
                .values(deadline_ledger=deadline_ledger, deadline_ledgers=deadline_ledgers)
            )
            return Changed(expectation_json(self._row(conn, external_id)), True, before)

    def dry_run(self, specs: Sequence[ExpectationSpec]) -> DryRun:
        """What posting `specs` would give now (status, event or closest candidate per
        record), from the same code as a real post in a transaction that is rolled back.
        Raises what create raises."""
        with rolled_back_transaction(self.book.engine) as conn:
            created = self.book.create(specs, conn)
            candidates: dict[str, str | None] = {}
            for chunk in chunks([r["external_id"] for r in created.records]):
                rows = conn.execute(
                    select(expectations.c.external_id, expectations.c.candidate_event_id).where(
                        expectations.c.external_id.in_(chunk)
                    )
                )
                candidates.update((external_id, event_id) for external_id, event_id in rows)
        records = [
            {**r, "candidate_event_id": candidates.get(r["external_id"])} for r in created.records
        ]
        return DryRun(records, created.created, created.existing)
