"""Findings: the discrepancies expected records open, each with a message that says what
happened and what to do about it."""

from __future__ import annotations

from typing import Any

from stellar_reconciler.matching import Claim, ObservedEvent
from stellar_reconciler.store.discrepancies import NewDiscrepancy
from stellar_reconciler.transactions import TransactionOutcome


def text_of(value: int | None) -> str | None:
    return str(value) if value is not None else None


def missing(row: Any, learned: str = "") -> NewDiscrepancy:
    """`learned`: what getTransaction said of the record's transaction, when it was asked."""
    amount = f" of {row.amount}" if row.amount is not None else ""
    learned = f"{learned} " if learned else ""
    return NewDiscrepancy(
        kind="missing_expected",
        key=f"missing_expected:{row.external_id}",
        subject=row.external_id,
        last_ledger=row.deadline_ledger,
        message=(
            f"expected record {row.external_id!r}: no {row.event_name} event{amount} from "
            f"contract {row.contract_id} by its deadline, ledger {row.deadline_ledger}. "
            f"{learned}Check "
            "that the transaction was submitted and succeeded and that the record's fields "
            "are right; if it is only late, post it again under a new external_id with a "
            "later deadline. Then resolve this discrepancy"
        ),
        expected={
            name: getattr(row, name)
            for name in (
                "contract_id",
                "event_name",
                "tx_hash",
                "topics",
                "amount",
                "tolerance",
                "deadline_ledger",
            )
        },
    )


def mismatch_found(claim: Claim) -> NewDiscrepancy:
    wanted, event = claim.expectation, claim.event
    return NewDiscrepancy(
        kind="amount_mismatch",
        key=f"amount_mismatch:{wanted.external_id}",
        subject=wanted.external_id,
        first_ledger=event.ledger,
        last_ledger=event.ledger,
        message=(
            f"expected record {wanted.external_id!r}: event {event.id} (ledger {event.ledger}, "
            f"transaction {event.tx_hash}) carries {event.amount}, but {wanted.amount} "
            f"(tolerance {wanted.tolerance}) was expected: difference {claim.difference}. "
            "Settle the difference with the counterparty or correct your records, then "
            "resolve this discrepancy"
        ),
        expected={"amount": text_of(wanted.amount), "tolerance": str(wanted.tolerance)},
        found={
            "event_id": event.id,
            "ledger": event.ledger,
            "tx_hash": event.tx_hash,
            "amount": text_of(event.amount),
            "difference": text_of(claim.difference),
        },
    )


def unexpected(event: ObservedEvent) -> NewDiscrepancy:
    return NewDiscrepancy(
        kind="unexpected",
        key=unexpected_key(event.id),
        subject=event.id,
        first_ledger=event.ledger,
        last_ledger=event.ledger,
        message=(
            f"event {event.id} ({event.name} from contract {event.contract_id}, ledger "
            f"{event.ledger}, transaction {event.tx_hash}) matches no expected record. If your "
            "application caused it, post the expected record (this then closes by itself); "
            "if not, find out who did"
        ),
        found={
            "event_id": event.id,
            "contract_id": event.contract_id,
            "event_name": event.name,
            "tx_hash": event.tx_hash,
            "topics": list(event.topics),
            "amount": text_of(event.amount),
        },
    )


def unexpected_key(event_id: str) -> str:
    return f"unexpected:{event_id}"


def _expected(row: Any) -> dict[str, Any]:
    return {"tx_hash": row.tx_hash, "deadline_ledger": row.deadline_ledger}


def failed_on_chain(row: Any, outcome: TransactionOutcome) -> NewDiscrepancy:
    return NewDiscrepancy(
        kind="failed_on_chain",
        key=f"failed_on_chain:{row.external_id}",
        subject=row.external_id,
        first_ledger=outcome.ledger,
        last_ledger=outcome.ledger,
        message=(
            f"expected record {row.external_id!r}: its transaction {row.tx_hash} failed on "
            f"chain in ledger {outcome.ledger} ({outcome.result_code}); it paid its fee and "
            "moved nothing. Submit the payment again (a new transaction: post a new record "
            "with its hash), then resolve this discrepancy"
        ),
        expected=_expected(row),
        found={
            "tx_status": outcome.status,
            "ledger": outcome.ledger,
            "result_code": outcome.result_code,
            "fee_charged": outcome.fee_charged,
        },
    )


def tx_not_found(row: Any, outcome: TransactionOutcome) -> NewDiscrepancy:
    return NewDiscrepancy(
        kind="not_found",
        key=f"not_found:{row.external_id}",
        subject=row.external_id,
        last_ledger=row.deadline_ledger,
        message=(
            f"expected record {row.external_id!r}: the network has no transaction "
            f"{row.tx_hash} (the RPC holds ledgers {outcome.oldest_ledger}-"
            f"{outcome.latest_ledger}, the deadline {row.deadline_ledger} included): it was "
            "never submitted, was rejected before reaching a ledger, or the hash is wrong. "
            "Check the hash your application recorded and submit again if needed, then "
            "resolve this discrepancy"
        ),
        expected=_expected(row),
        found={
            "tx_status": outcome.status,
            "oldest_ledger": outcome.oldest_ledger,
            "latest_ledger": outcome.latest_ledger,
        },
    )
