"""Why a record settled as it did, in data: each candidate event's verdict and its reasons.

Pure, like matching.py, whose `Expectation.differences` supplies every field-level reason:
an explanation and the matcher therefore apply the same rules. The store's read
(store/explanations.py) gathers the events and claims; this module judges them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from stellar_reconciler.matching import (
    AMOUNT_MISMATCH,
    AMOUNT_UNREADABLE,
    CANCELLED,
    FAILED_ON_CHAIN,
    MATCHED,
    MISSING_EXPECTED,
    NOT_FOUND,
    PARTIALLY_MATCHED,
    PENDING,
    Expectation,
    ObservedEvent,
)

TAKEN = "taken"
BEST_CANDIDATE = "best_candidate"
REJECTED = "rejected"
# A verdict's place in the listing: what the record holds first, then the nearest misses.
_ORDER = {TAKEN: 0, BEST_CANDIDATE: 1, REJECTED: 2}


@dataclass(frozen=True, slots=True)
class Holder:
    """Another record holding an event: who, and in what status."""

    external_id: str
    status: str


@dataclass(frozen=True, slots=True)
class Judged:
    """One candidate event and the verdict on it for one record."""

    event: ObservedEvent
    verdict: str
    reasons: tuple[str, ...]
    differences: tuple[dict[str, Any], ...]
    claimed_by: Holder | None

    def sort_key(self) -> tuple[int, int, int, str]:
        amount = next((d for d in self.differences if d["field"] == "amount"), None)
        gap = abs(int(amount["by"])) if amount is not None and "by" in amount else 0
        return (_ORDER[self.verdict], len(self.differences), gap, self.event.id)

    def as_json(self) -> dict[str, Any]:
        return {
            "event": observed_json(self.event),
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "differences": list(self.differences),
            "claimed_by": (
                {"external_id": self.claimed_by.external_id, "status": self.claimed_by.status}
                if self.claimed_by is not None
                else None
            ),
        }


def observed_json(event: ObservedEvent) -> dict[str, Any]:
    """An event as explanations show it: what matching compared (topics normalised)."""
    return {
        "id": event.id,
        "ledger": event.ledger,
        "contract_id": event.contract_id,
        "event_name": event.name,
        "tx_hash": event.tx_hash,
        "topics": list(event.topics),
        "amount": str(event.amount) if event.amount is not None else None,
        "in_successful_contract_call": event.successful,
    }


def judge(
    record: Expectation,
    status: str,
    event: ObservedEvent,
    *,
    taken_id: str | None,
    candidate_id: str | None,
    holder: Holder | None,
    look_back_from: int | None,
    part_ids: Collection[str] = (),
    unreadable: tuple[str, str] | None = None,
) -> Judged:
    """The verdict on one event for `record` (in `status`, holding `taken_id` or showing
    `candidate_id` while pending); `holder` is another record that holds the event, and
    `look_back_from` the first ledger the record's look-back reached (None: any age). A sum
    record (allow_partial, a group) holds `part_ids`; `unreadable` is the event id and the
    reason of the fitting event whose amount could not be read."""
    differences = record.differences(event)
    if event.id in part_ids:
        # A part's amount counts towards the sum: alone it is not meant to equal the amount.
        differences = tuple(d for d in differences if d.field != "amount")
    shown = tuple(d.as_json(record.tolerance) for d in differences)
    reasons = [str(d["reason"]) for d in shown]
    if event.id in part_ids:
        verdict = TAKEN
        reasons.insert(0, "one of the events summed into this record (an instalment or part)")
    elif unreadable is not None and event.id == unreadable[0]:
        verdict = BEST_CANDIDATE
        reasons = [
            f"fits the record, but its amount cannot be read: {unreadable[1]}",
            *(r for d, r in zip(shown, reasons, strict=True) if d["field"] != "amount"),
        ]
    elif event.id == taken_id:
        verdict = TAKEN
        reasons.insert(0, _taken_reason(status, bool(differences)))
    elif event.id == candidate_id:
        verdict = BEST_CANDIDATE
        reasons.insert(
            0,
            "the closest candidate so far; settles amount_mismatch on it at the deadline "
            "unless an exact event comes first",
        )
    else:
        verdict = REJECTED
        if holder is not None:
            reasons.insert(0, f"claimed by record {holder.external_id!r} ({holder.status})")
        if look_back_from is not None and event.ledger < look_back_from:
            reasons.append(f"before the look-back window, which starts at ledger {look_back_from}")
        if not reasons:
            reasons.append(_exact_but_free_reason(status, taken_id))
    return Judged(event, verdict, tuple(reasons), shown, holder)


def _taken_reason(status: str, differs: bool) -> str:
    if status == AMOUNT_MISMATCH:
        return (
            "settled against at the deadline: no event within tolerance came, and this was "
            "the closest unclaimed one"
        )
    if differs:
        return "held by this record"
    return "every field agrees and the amount is within tolerance: the record's event"


def _exact_but_free_reason(status: str, taken_id: str | None) -> str:
    if status == CANCELLED:
        return "fits exactly, but a cancelled record claims no event"
    if taken_id is not None:
        return (
            f"fits exactly too; the record holds {taken_id} (the earliest free exact event "
            "when it was matched)"
        )
    return "fits exactly, but was not stored while the record was waiting for it"


def summary(record: dict[str, Any], considered: int, checkpoint: int | None) -> str:
    """The verdict in one sentence, from the record as the API shows it."""
    status = str(record["status"])
    deadline = record["deadline_ledger"]
    parts = record.get("event_ids")
    if status in (MATCHED, PARTIALLY_MATCHED) and parts is not None:
        paid = f"{record['settled_amount']} of {record['amount']} paid by {len(parts)} event(s)"
        if status == MATCHED:
            return f"matched by a sum: {paid}"
        return (
            f"partially matched: {paid} so far, {record['outstanding_amount']} outstanding; "
            f"open until ledger {deadline}"
        )
    if status == AMOUNT_UNREADABLE:
        return (
            f"event {record['unreadable_event_id']} (ledger {record['event_ledger']}) fits, but "
            f"its amount cannot be read: {record['unreadable_reason']}; settled at the "
            f"deadline, ledger {deadline}"
        )
    if status == MATCHED:
        within = (
            f", amount within tolerance (difference {record['difference']})"
            if record["difference"] not in (None, "0")
            else ""
        )
        return f"matched event {record['event_id']} in ledger {record['event_ledger']}{within}"
    if status == AMOUNT_MISMATCH:
        return (
            f"no event within tolerance by the deadline, ledger {deadline}; settled against "
            f"the closest, {record['event_id']} (ledger {record['event_ledger']}), which "
            f"carries {record['found_amount']}: difference {record['difference']}, tolerance "
            f"{record['tolerance']}"
        )
    if status == MISSING_EXPECTED:
        learned = f" (the network said {record['tx_status']})" if record["tx_status"] else ""
        return (
            f"no fitting event by the deadline, ledger {deadline}{learned}; {considered} "
            "event(s) considered, none fits"
        )
    if status == FAILED_ON_CHAIN:
        return (
            f"transaction {record['tx_hash']} failed on chain in ledger {record['tx_ledger']} "
            f"({record['result_code']}): it emitted no event to match"
        )
    if status == NOT_FOUND:
        return f"the network has no transaction {record['tx_hash']} up to the deadline"
    if status == CANCELLED:
        return f"cancelled by {record['cancelled_by']} at {record['cancelled_at']}"
    if status == PENDING:
        best = (
            f"; closest candidate so far {record['candidate_event_id']} (difference "
            f"{record['difference']})"
            if record.get("candidate_event_id")
            else ""
        )
        if checkpoint is not None and checkpoint >= deadline:
            return (
                f"past its deadline, ledger {deadline}, but not settled: another record with a "
                "later deadline holds an exact event for it and may yet move to a payment of "
                f"its own, freeing it (checkpoint {checkpoint}){best}"
            )
        return f"waiting for its event until ledger {deadline} (checkpoint {checkpoint}){best}"
    return status
