"""Verdicts on candidate events (explanation.py): taken, best candidate or rejected, and the
reasons a person reads, each from the record's status and Expectation.differences."""

from __future__ import annotations

from stellar_reconciler.explanation import (
    BEST_CANDIDATE,
    REJECTED,
    TAKEN,
    Holder,
    judge,
    summary,
)
from stellar_reconciler.matching import Expectation, ObservedEvent
from tests.unit.test_assignment import ADDRESSES, CONTRACTS, TX_HASHES

WANTED = Expectation(
    1, "inv-1", CONTRACTS[0], "transfer", 20, topics=((2, ADDRESSES[1]),), amount=100
)


def event(event_id: str, ledger: int = 10, amount: int | None = 100) -> ObservedEvent:
    topics = ("transfer", ADDRESSES[0], ADDRESSES[1])
    return ObservedEvent(event_id, ledger, CONTRACTS[0], "transfer", TX_HASHES[0], topics, amount)


def test_the_taken_event_of_a_mismatch_says_why_and_by_how_much() -> None:
    """The event an amount_mismatch settled on is taken, its reasons say it was the closest
    at the deadline and give the amount difference."""
    judged = judge(
        WANTED,
        "amount_mismatch",
        event("e1", amount=90),
        taken_id="e1",
        candidate_id=None,
        holder=None,
        look_back_from=1,
    )
    assert judged.verdict == TAKEN
    assert "closest unclaimed" in judged.reasons[0]
    assert judged.differences[0]["by"] == "-10"


def test_rejections_name_the_holder_the_window_and_an_equal_alternative() -> None:
    """An exact event another record holds is rejected naming it; one before the look-back
    says so; an exact free event beside the record's own says which it holds."""
    held = judge(
        WANTED,
        "pending",
        event("e2"),
        taken_id=None,
        candidate_id=None,
        holder=Holder("inv-0", "matched"),
        look_back_from=1,
    )
    assert (held.verdict, held.reasons) == (REJECTED, ("claimed by record 'inv-0' (matched)",))
    early = judge(
        WANTED,
        "missing_expected",
        event("e3", ledger=5),
        taken_id=None,
        candidate_id=None,
        holder=None,
        look_back_from=8,
    )
    assert early.reasons == ("before the look-back window, which starts at ledger 8",)
    twin = judge(
        WANTED,
        "matched",
        event("e4"),
        taken_id="e1",
        candidate_id=None,
        holder=None,
        look_back_from=1,
    )
    assert "the record holds e1" in twin.reasons[0]


def test_a_pending_records_candidate_and_its_summary() -> None:
    """While pending, the closest event is the best candidate, and the summary names it."""
    judged = judge(
        WANTED,
        "pending",
        event("e5", amount=99),
        taken_id=None,
        candidate_id="e5",
        holder=None,
        look_back_from=1,
    )
    assert judged.verdict == BEST_CANDIDATE
    record = {
        "status": "pending",
        "deadline_ledger": 20,
        "candidate_event_id": "e5",
        "difference": "-1",
    }
    assert summary(record, 1, 12) == (
        "waiting for its event until ledger 20 (checkpoint 12); closest candidate so far e5 "
        "(difference -1)"
    )
    # Past the deadline and still pending: a holder of its exact event may yet free it.
    assert summary({**record, "candidate_event_id": None}, 1, 25).startswith(
        "past its deadline, ledger 20, but not settled: another record with a later deadline"
    )


def test_a_sum_records_parts_are_taken_and_its_summary_says_what_is_outstanding() -> None:
    """An instalment of a partial record is taken without an amount difference (it counts
    towards the sum); an event outside the parts is still judged alone; the summary gives
    what was paid, by how many events, and what is outstanding."""
    part = judge(
        WANTED,
        "partially_matched",
        event("e6", amount=40),
        taken_id=None,
        candidate_id=None,
        holder=None,
        look_back_from=1,
        part_ids=("e6", "e7"),
    )
    assert (part.verdict, part.differences) == (TAKEN, ())
    assert "summed into this record" in part.reasons[0]
    other = judge(
        WANTED,
        "partially_matched",
        event("e8", amount=400),
        taken_id=None,
        candidate_id=None,
        holder=None,
        look_back_from=1,
        part_ids=("e6", "e7"),
    )
    assert other.verdict == REJECTED and other.differences[0]["field"] == "amount"
    record = {
        "status": "partially_matched",
        "deadline_ledger": 20,
        "amount": "100",
        "settled_amount": "70",
        "outstanding_amount": "30",
        "event_ids": ["e6", "e7"],
    }
    assert summary(record, 2, 12) == (
        "partially matched: 70 of 100 paid by 2 event(s) so far, 30 outstanding; "
        "open until ledger 20"
    )
    assert summary({**record, "status": "matched", "settled_amount": "100"}, 2, 12) == (
        "matched by a sum: 100 of 100 paid by 2 event(s)"
    )


def test_an_unreadable_amount_names_the_event_and_why() -> None:
    """The fitting event whose amount could not be read is the record's closest, its first
    reason quoting why; the summary names the event, the reason and the deadline."""
    why = "the value is a string ('1.5000000'), not a whole number in the token's smallest unit"
    judged = judge(
        WANTED,
        "amount_unreadable",
        event("e9", amount=None),
        taken_id=None,
        candidate_id=None,
        holder=None,
        look_back_from=1,
        unreadable=("e9", why),
    )
    assert judged.verdict == BEST_CANDIDATE
    assert judged.reasons == (f"fits the record, but its amount cannot be read: {why}",)
    record = {
        "status": "amount_unreadable",
        "deadline_ledger": 20,
        "event_ledger": 11,
        "unreadable_event_id": "e9",
        "unreadable_reason": why,
    }
    assert summary(record, 1, 20) == (
        f"event e9 (ledger 11) fits, but its amount cannot be read: {why}; settled at the "
        "deadline, ledger 20"
    )
