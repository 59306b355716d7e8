"""Transaction outcomes: what a record pinned to a transaction hash learns from the network.

A pending record with a `tx_hash` whose deadline passes without an event is not settled
`missing_expected` at once (settlement.expire marks it `outcome_due`); the worker asks
getTransaction (outcomes.py) and settles it here: `failed_on_chain` with the result code,
`not_found` when the node, holding the deadline's ledger, never saw the transaction, or
`missing_expected` when the transaction succeeded without a fitting event or the node cannot
tell. A batch with a failed call of a pinned transaction marks its records due at once, so a
failure is learned before the deadline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, text, update

from stellar_reconciler.matching import (
    FAILED_ON_CHAIN,
    MISSING_EXPECTED,
    NOT_FOUND,
    PENDING,
)
from stellar_reconciler.models import Batch
from stellar_reconciler.store.bulk import chunks
from stellar_reconciler.store.database import read_connection, write_transaction
from stellar_reconciler.store.discrepancies import NewDiscrepancy, open_all
from stellar_reconciler.store.findings import failed_on_chain, missing, tx_not_found
from stellar_reconciler.store.schema import checkpoints, expectations
from stellar_reconciler.transactions import FAILED, SUCCESS, TransactionOutcome

_IS_PENDING = text("expectations.status = 'pending'")


@dataclass(frozen=True, slots=True)
class DueRecord:
    id: int
    external_id: str
    tx_hash: str


@dataclass(frozen=True, slots=True)
class Answer:
    """What getTransaction said of a due record's transaction (None, and `why`: nothing)."""

    record: DueRecord
    outcome: TransactionOutcome | None
    why: str = ""


def mark_due(conn: Connection, ids: Sequence[int]) -> None:
    """Leave these pending records for the outcome check (their deadline passed unmatched)."""
    for chunk in chunks(sorted(ids)):
        conn.execute(
            update(expectations)
            .where(expectations.c.id.in_(chunk))
            .values(outcome_due=True, candidate_event_id=None, found_amount=None, difference=None)
        )


def flag_failed_calls(conn: Connection, batch: Batch) -> None:
    """Mark pending records pinned to a transaction with a failed call in this batch as due:
    the transaction may have failed, and getTransaction can say so before the deadline."""
    failed = sorted({e.tx_hash for e in batch.events if not e.in_successful_contract_call})
    for chunk in chunks(failed):
        conn.execute(
            update(expectations)
            .where(
                _IS_PENDING,
                expectations.c.tx_hash.in_(chunk),
                expectations.c.outcome_due.is_(False),
            )
            .values(outcome_due=True)
        )


def verdict(deadline: int, checkpoint: int, outcome: TransactionOutcome | None) -> str | None:
    """The status a due record settles in (PENDING: not yet, it waits for its event again;
    None: ask again later). `outcome` None means the node cannot answer getTransaction."""
    early = checkpoint < deadline
    if outcome is None:
        return PENDING if early else MISSING_EXPECTED
    if outcome.status == FAILED:
        return FAILED_ON_CHAIN
    if early:
        return PENDING
    if outcome.status == SUCCESS:
        return MISSING_EXPECTED
    if outcome.latest_ledger < deadline:
        # A node behind our checkpoint (one of several behind a balancer) may not have it yet.
        return None
    if outcome.oldest_ledger > deadline:
        # The node has forgotten every ledger the transaction could be in: it cannot tell.
        return MISSING_EXPECTED
    return NOT_FOUND


class TxOutcomes:
    """The records due an outcome check, and what settling them writes."""

    def __init__(self, engine: Engine, stream: str) -> None:
        self.engine = engine
        self.stream = stream

    def due(self, limit: int) -> list[DueRecord]:
        """Up to `limit` records waiting for an outcome check, oldest first."""
        query = (
            select(expectations.c.id, expectations.c.external_id, expectations.c.tx_hash)
            .where(_IS_PENDING, expectations.c.outcome_due.is_(True))
            .order_by(expectations.c.id)
            .limit(limit)
        )
        with read_connection(self.engine) as conn:
            return [DueRecord(r.id, r.external_id, r.tx_hash) for r in conn.execute(query)]

    def settle(
        self, record: DueRecord, outcome: TransactionOutcome | None, why: str = ""
    ) -> str | None:
        """Write what getTransaction said (`why`: why it could not say) and settle the record
        if that decides it; returns its status then, or None when it is to be asked again or
        settled meanwhile (matched by a repair, cancelled)."""
        return self.settle_all([Answer(record, outcome, why)])[0]

    def settle_all(self, answers: Sequence[Answer]) -> list[str | None]:
        """`settle` for each answer, in one transaction (a poll's worth costs one commit)."""
        with write_transaction(self.engine) as conn:
            checkpoint = checkpoint_of(conn, self.stream) or 0
            return [self._settle(conn, checkpoint, answer) for answer in answers]

    @staticmethod
    def _settle(conn: Connection, checkpoint: int, answer: Answer) -> str | None:
        record, outcome = answer.record, answer.outcome
        row = conn.execute(
            select(expectations).where(
                expectations.c.id == record.id,
                _IS_PENDING,
                expectations.c.outcome_due.is_(True),
            )
        ).one_or_none()
        if row is None:
            return None
        status = verdict(row.deadline_ledger, checkpoint, outcome)
        if status is None:
            return None
        values: dict[str, Any] = {"outcome_due": False}
        if outcome is not None:
            values.update(
                tx_status=outcome.status,
                tx_ledger=outcome.ledger,
                result_code=outcome.result_code,
            )
        if status != PENDING:
            values.update(status=status, settled_at=datetime.now(UTC))
        # Still pending and due, checked again as the row is written: a batch committed
        # meanwhile (a repair) may have matched it, and PostgreSQL re-reads it here.
        written = conn.execute(
            update(expectations)
            .where(
                expectations.c.id == row.id,
                _IS_PENDING,
                expectations.c.outcome_due.is_(True),
            )
            .values(values)
        )
        if written.rowcount != 1:
            return None
        if status != PENDING:
            open_all(conn, [_finding(row, status, outcome, answer.why)])
        return status


def _finding(row: Any, status: str, outcome: TransactionOutcome | None, why: str) -> NewDiscrepancy:
    if status == FAILED_ON_CHAIN and outcome is not None:
        return failed_on_chain(row, outcome)
    if status == NOT_FOUND and outcome is not None:
        return tx_not_found(row, outcome)
    if outcome is None:
        asked = f"The RPC could not say what became of transaction {row.tx_hash}: {why}."
        return missing(row, asked)
    if outcome.status == SUCCESS:
        return missing(
            row,
            f"Its transaction {row.tx_hash} succeeded in ledger {outcome.ledger} without "
            "emitting an event that fits the record: compare the record's contract, event "
            "name, topics and amount with what the transaction emitted.",
        )
    return missing(
        row,
        f"The RPC keeps ledgers from {outcome.oldest_ledger} only, after the deadline, so it "
        f"cannot say whether transaction {row.tx_hash} ever landed.",
    )


def checkpoint_of(conn: Connection, stream: str) -> int | None:
    ledger = conn.execute(
        select(checkpoints.c.ledger).where(checkpoints.c.stream == stream)
    ).scalar_one_or_none()
    return int(ledger) if ledger is not None else None
