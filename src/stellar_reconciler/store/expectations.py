"""Expectations: the application's expected records, created, looked up and counted; the
store holds one as `store.expectations`.

Creating is all or nothing: an external_id posted before with other content refuses the whole
request, and with the same content the stored record is returned. A new record is matched at
once against unclaimed events already stored (the application may post after the event
arrived): those of its transaction when it names one, else those of its contract and event
name from LOOKBACK_LEDGERS before the checkpoint up to its deadline. Later events settle it
through `ExpectationMatcher`, the batch hook. Both use the best match of assignment.py and run
under the lock in settlement.py, so a record posted while a batch commits cannot miss that
batch's events.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, func, insert, select, update

from stellar_reconciler.assignment import match_events
from stellar_reconciler.errors import ExpectationConflictError, ExpectationInputError
from stellar_reconciler.expectation_spec import ExpectationSpec
from stellar_reconciler.matching import (
    CANCELLED,
    PARTIALLY_MATCHED,
    PENDING,
    STATUSES,
    Claim,
    Expectation,
    ObservedEvent,
    match_key,
    topics_json,
)
from stellar_reconciler.models import Batch, iso_utc
from stellar_reconciler.store import claimants, revisions, settlement
from stellar_reconciler.store.bulk import chunks
from stellar_reconciler.store.candidates import (
    LOOKBACK_LEDGERS,
    UNCLAIMED,
    first_event_id,
    note_candidates,
    observed_events,
)
from stellar_reconciler.store.claimants import IS_PENDING, expectation_of
from stellar_reconciler.store.database import read_connection, write_transaction
from stellar_reconciler.store.discrepancies import Discrepancies, discrepancy_json
from stellar_reconciler.store.findings import unexpected_key
from stellar_reconciler.store.groups import check_groups
from stellar_reconciler.store.outcomes import flag_failed_calls
from stellar_reconciler.store.record_content import content_of, stored_content
from stellar_reconciler.store.schema import (
    checkpoints,
    discrepancies,
    events,
    expectations,
)
from stellar_reconciler.store.settlement import lock
from stellar_reconciler.store.shapes import note_unreadable_stored
from stellar_reconciler.store.sum_records import (
    settle_batch_sums,
    settle_new_sums,
    sum_json,
    sum_key,
    with_parts,
)

# Settled records the summary (and the dashboard) shows, newest first.
RECENTLY_SETTLED = 5
DISCREPANCY_KINDS = (
    "missing_expected",
    "amount_mismatch",
    "unexpected",
    "failed_on_chain",
    "not_found",
    "amount_unreadable",
)


@dataclass(frozen=True, slots=True)
class Created:
    records: list[dict[str, Any]]
    created: int
    existing: int


def expectation_json(row: Any) -> dict[str, Any]:
    return {
        "external_id": row.external_id,
        "contract_id": row.contract_id,
        "event_name": row.event_name,
        "tx_hash": row.tx_hash,
        "topics": row.topics,
        "amount": row.amount,
        "tolerance": row.tolerance,
        "deadline_ledger": row.deadline_ledger,
        "deadline_ledgers": row.deadline_ledgers,
        "status": row.status,
        "event_id": row.event_id,
        "event_ledger": row.event_ledger,
        "found_amount": row.found_amount,
        "difference": row.difference,
        "created_at": iso_utc(row.created_at),
        "settled_at": iso_utc(row.settled_at),
        "outcome_due": row.outcome_due,
        "tx_status": row.tx_status,
        "tx_ledger": row.tx_ledger,
        "result_code": row.result_code,
        "cancelled_at": iso_utc(row.cancelled_at),
        "cancelled_by": row.cancelled_by,
        "unreadable_event_id": row.unreadable_event_id,
        "unreadable_reason": row.unreadable_reason,
        **sum_json(row),
    }


class Expectations:
    """Every query on expectations; writes run in the caller's transaction when given one."""

    def __init__(self, engine: Engine, discrepancies: Discrepancies, stream: str) -> None:
        self.engine = engine
        self.discrepancies = discrepancies
        self.stream = stream

    @contextmanager
    def _tx(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
            return
        with write_transaction(self.engine) as own:
            yield own

    def _checkpoint(self, conn: Connection) -> int | None:
        ledger = conn.execute(
            select(checkpoints.c.ledger).where(checkpoints.c.stream == self.stream)
        ).scalar_one_or_none()
        return int(ledger) if ledger is not None else None

    # --- creating ------------------------------------------------------------------------

    def create(self, specs: Sequence[ExpectationSpec], conn: Connection | None = None) -> Created:
        """Create the records not stored yet and settle them against stored events at once;
        all or nothing. A record stored before with the same content is returned as it is."""
        unique = self._dedupe(specs)
        with self._tx(conn) as tx:
            lock(tx)
            checkpoint = self._checkpoint(tx)
            stored = self._rows_by_external_id(tx, [s.external_id for s in unique])
            conflicts = []
            for spec in unique:
                if spec.external_id in stored:
                    old, given = stored_content(stored[spec.external_id]), content_of(spec)
                    differs = sorted(k for k in given if given[k] != old[k])
                    if differs:
                        conflicts.append((spec.external_id, differs))
            if conflicts:
                raise ExpectationConflictError(conflicts)
            new = [s for s in unique if s.external_id not in stored]
            index_of = {s.external_id: i for i, s in enumerate(specs)}
            rows = self._rows(new, checkpoint, index_of)
            if problems := check_groups(tx, rows, index_of):
                raise ExpectationInputError(problems)
            if rows:
                tx.execute(insert(expectations), rows)
                created = self._rows_by_external_id(tx, [r["external_id"] for r in rows])
                singles = settle_new_sums(
                    tx, list(created.values()), checkpoint, LOOKBACK_LEDGERS, self.discrepancies
                )
                self._look_back([expectation_of(r) for r in singles], checkpoint, tx)
            final = self._rows_by_external_id(tx, [s.external_id for s in unique])
            records = with_parts(tx, expectation_json, [final[s.external_id] for s in unique])
        return Created(
            records,
            len(new),
            len(unique) - len(new),
        )

    @staticmethod
    def _dedupe(specs: Sequence[ExpectationSpec]) -> list[ExpectationSpec]:
        first: dict[str, int] = {}
        unique: list[ExpectationSpec] = []
        problems = []
        for index, spec in enumerate(specs):
            seen = first.setdefault(spec.external_id, index)
            if seen == index:
                unique.append(spec)
            elif content_of(specs[seen]) != content_of(spec):
                problems.append(
                    (index, "external_id", f"repeats record {seen} with different content")
                )
        if problems:
            raise ExpectationInputError(problems)
        return unique

    @staticmethod
    def _rows(
        specs: Sequence[ExpectationSpec], checkpoint: int | None, index_of: dict[str, int]
    ) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        rows, problems = [], []
        for spec in specs:
            deadline = spec.deadline_ledger
            if spec.deadline_ledgers is not None:
                if checkpoint is None:
                    problems.append(
                        (
                            index_of[spec.external_id],
                            "deadline_ledgers",
                            "counts from the service's checkpoint, and no ledger has been "
                            "indexed yet; give deadline_ledger (an absolute ledger) instead",
                        )
                    )
                    continue
                deadline = checkpoint + spec.deadline_ledgers
            topics = spec.topic_values()
            rows.append(
                {
                    "external_id": spec.external_id,
                    "contract_id": spec.contract_id,
                    "event_name": spec.event_name,
                    "tx_hash": spec.tx_hash,
                    "topics": topics_json(topics),
                    "amount": str(spec.amount) if spec.amount is not None else None,
                    "tolerance": str(spec.tolerance),
                    "deadline_ledger": deadline,
                    "deadline_ledgers": spec.deadline_ledgers,
                    "match_key": sum_key(spec) + match_key(spec.tx_hash, topics),
                    "allow_partial": spec.allow_partial,
                    "group_id": spec.group_id,
                    "status": PENDING,
                    "created_at": now,
                }
            )
        if problems:
            raise ExpectationInputError(problems)
        return rows

    def _rows_by_external_id(self, conn: Connection, ids: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for chunk in chunks(ids):
            rows = conn.execute(select(expectations).where(expectations.c.external_id.in_(chunk)))
            found.update((row.external_id, row) for row in rows)
        return found

    def _look_back(
        self, created: list[Expectation], checkpoint: int | None, conn: Connection
    ) -> None:
        """Settle new expectations against events stored before them."""
        if checkpoint is None:
            return
        candidates: dict[str, ObservedEvent] = {}
        # Each window of stored events the new records may fit: by transaction, or by name.
        windows: list[list[ColumnElement[bool]]] = []
        pinned = sorted({e.tx_hash for e in created if e.tx_hash is not None})
        windows.extend([events.c.tx_hash.in_(chunk)] for chunk in chunks(pinned))
        loose: dict[tuple[str, str], int] = {}
        for e in created:
            if e.tx_hash is None:
                group = (e.contract_id, e.event_name)
                loose[group] = max(loose.get(group, 0), e.deadline_ledger)
        for (contract_id, name), deadline in loose.items():
            first = max(checkpoint - LOOKBACK_LEDGERS + 1, 0)
            windows.append(
                [
                    events.c.contract_id == contract_id,
                    events.c.name == name,
                    # Ids sort in ledger order: a range on (name, id) reads only the window.
                    events.c.id >= first_event_id(first),
                    events.c.id < first_event_id(deadline + 1),
                ]
            )
        # An event settled as another record's amount mismatch is still on offer to a record
        # it fits exactly (store/revisions.py).
        mismatches: dict[str, Claim] = {}
        for where in windows:
            candidates.update(
                (e.id, e) for e in observed_events(conn.execute(UNCLAIMED.where(*where)))
            )
            mismatches.update((c.event.id, c) for c in revisions.mismatches_among(conn, where))
        near = [*candidates.values(), *(c.event for c in mismatches.values())]
        held = claimants.held_for(conn, near, pinned_to=created)
        result = match_events(created, candidates.values(), [*held, *mismatches.values()])
        revisions.release(conn, result.revised)
        settlement.move(conn, result.moved)
        settlement.settle(conn, result.claims)
        revisions.settle_again(conn, result.revised, result.claims, checkpoint)
        note_candidates(conn, result.candidates)
        claimants.mark_blocked(conn, result.blocked)
        for claim in result.claims:
            self.discrepancies.resolve_key(
                unexpected_key(claim.event.id),
                "expectations",
                f"claimed by expectation {claim.expectation.external_id!r}, posted late",
                conn=conn,
            )
        claimed = {c.expectation.id for c in result.claims}
        unclaimed_records = [e for e in created if e.id not in claimed]
        note_unreadable_stored(conn, unclaimed_records, candidates.values())
        settlement.expire(conn, checkpoint, [e.id for e in unclaimed_records])

    # --- reading -------------------------------------------------------------------------

    def get(self, external_id: str) -> dict[str, Any] | None:
        with read_connection(self.engine) as conn:
            row = conn.execute(
                select(expectations).where(expectations.c.external_id == external_id)
            ).one_or_none()
            return with_parts(conn, expectation_json, [row])[0] if row is not None else None

    def listing(
        self,
        status: str | None = None,
        contract_id: str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """A page in creation order and the cursor of the next page (None at the end)."""
        query = select(expectations).order_by(expectations.c.id).limit(limit)
        if status is not None:
            query = query.where(expectations.c.status == status)
        if contract_id is not None:
            query = query.where(expectations.c.contract_id == contract_id)
        if after is not None:
            query = query.where(expectations.c.id > after)
        with read_connection(self.engine) as conn:
            rows = list(conn.execute(query))
            records = with_parts(conn, expectation_json, rows)
        return records, rows[-1].id if len(rows) == limit else None

    def unpublished(self, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Settled records whose settled state is not yet published to NATS: (id, JSON)."""
        query = (
            select(expectations)
            .where(expectations.c.settled_at.is_not(None), expectations.c.published_at.is_(None))
            .order_by(expectations.c.id)
            .limit(limit)
        )
        with read_connection(self.engine) as conn:
            return [(int(r.id), expectation_json(r)) for r in conn.execute(query)]

    def mark_published(self, published: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """Mark records published, unless they settled differently since they were read."""
        with write_transaction(self.engine) as conn:
            for record_id, body in published:
                conn.execute(
                    update(expectations)
                    .where(
                        expectations.c.id == record_id,
                        expectations.c.status == body["status"],
                        expectations.c.event_id.is_not_distinct_from(body["event_id"]),
                    )
                    .values(published_at=datetime.now(UTC))
                )

    def counts(self) -> dict[str, int]:
        """Expectations per status, every status present: what the metrics gauge shows."""
        found = dict.fromkeys(STATUSES, 0)
        with read_connection(self.engine) as conn:
            rows = conn.execute(
                select(expectations.c.status, func.count()).group_by(expectations.c.status)
            )
            found.update((status, int(count)) for status, count in rows)
        return found

    def summary(self) -> dict[str, Any]:
        """Counts, match rate and the oldest items still needing attention."""
        counts = self.counts()
        decided = sum(
            counts[s] for s in STATUSES if s not in (PENDING, CANCELLED, PARTIALLY_MATCHED)
        )
        kinds = DISCREPANCY_KINDS
        with read_connection(self.engine) as conn:
            oldest = conn.execute(
                select(expectations).where(IS_PENDING).order_by(expectations.c.id).limit(1)
            ).one_or_none()
            still_open = and_(
                discrepancies.c.kind.in_(kinds), discrepancies.c.resolved_at.is_(None)
            )
            problem = conn.execute(
                select(discrepancies).where(still_open).order_by(discrepancies.c.id).limit(1)
            ).one_or_none()
            open_counts = dict.fromkeys(kinds, 0)
            open_counts.update(
                (kind, int(count))
                for kind, count in conn.execute(
                    select(discrepancies.c.kind, func.count())
                    .where(still_open)
                    .group_by(discrepancies.c.kind)
                )
            )
            checkpoint = self._checkpoint(conn)
            # No index on settled_at: a top-N over the table, as cheap as the counts above.
            recent = conn.execute(
                select(expectations)
                .where(expectations.c.settled_at.is_not(None))
                .order_by(expectations.c.settled_at.desc(), expectations.c.id.desc())
                .limit(RECENTLY_SETTLED)
            )
            recently_settled = [expectation_json(row) for row in recent]
        return {
            "expectations": {**counts, "total": sum(counts.values())},
            "open_discrepancies": open_counts,
            "match_rate": round(counts["matched"] / decided, 6) if decided else None,
            "oldest_pending": expectation_json(oldest) if oldest is not None else None,
            "oldest_open_discrepancy": discrepancy_json(problem) if problem else None,
            "recently_settled": recently_settled,
            "checkpoint": checkpoint,
        }


class ExpectationMatcher:
    """The batch hook (store.BatchHook): settles expectations in the batch's transaction."""

    def __init__(self, expectations: Expectations, unexpected_contracts: Collection[str] = ()):
        self.expectations = expectations
        self.unexpected_contracts = frozenset(unexpected_contracts)

    def __call__(self, conn: Connection, batch: Batch) -> None:
        # Sums first: the one-event matching leaves the events they took.
        settle_batch_sums(conn, batch, self.expectations.discrepancies)
        settlement.settle_batch(conn, batch, self.unexpected_contracts)
        flag_failed_calls(conn, batch)
