"""What must be equal for a re-posted expected record to be the same record: its content as
posted (ExpectationSpec) and as stored, compared field by field (a difference is a 409)."""

from __future__ import annotations

from typing import Any

from stellar_reconciler.expectation_spec import ExpectationSpec
from stellar_reconciler.matching import canonical, topics_json


def content_of(spec: ExpectationSpec) -> dict[str, Any]:
    """What must be equal for a re-post to be the same record (the deadline as given)."""
    return {
        "contract_id": spec.contract_id,
        "event_name": spec.event_name,
        "tx_hash": spec.tx_hash,
        "topics": canonical(topics_json(spec.topic_values())),
        "amount": str(spec.amount) if spec.amount is not None else None,
        "tolerance": str(spec.tolerance),
        "allow_partial": spec.allow_partial,
        "group_id": spec.group_id,
        "deadline": ("ledgers", spec.deadline_ledgers)
        if spec.deadline_ledgers is not None
        else ("ledger", spec.deadline_ledger),
    }


def stored_content(row: Any) -> dict[str, Any]:
    return {
        "contract_id": row.contract_id,
        "event_name": row.event_name,
        "tx_hash": row.tx_hash,
        "topics": canonical(row.topics),
        "amount": row.amount,
        "tolerance": row.tolerance,
        "allow_partial": row.allow_partial,
        "group_id": row.group_id,
        "deadline": ("ledgers", row.deadline_ledgers)
        if row.deadline_ledgers is not None
        else ("ledger", row.deadline_ledger),
    }
