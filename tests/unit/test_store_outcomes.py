"""Transaction outcomes in the store, on SQLite and PostgreSQL: which records are due, what each
getTransaction answer settles them as, and a failed call learned before the deadline."""

from __future__ import annotations

import pytest

from stellar_reconciler.matching import FAILED_ON_CHAIN, MISSING_EXPECTED, NOT_FOUND, PENDING
from stellar_reconciler.store import Store
from stellar_reconciler.store.expectations import ExpectationMatcher, Expectations
from stellar_reconciler.store.outcomes import verdict
from stellar_reconciler.transactions import TransactionOutcome
from tests.unit.test_store_expectations import batch, open_discrepancies, spec, transfer, tx


def outcome(
    status: str, latest: int = 100, oldest: int = 1, ledger: int | None = None
) -> TransactionOutcome:
    code = {"FAILED": "txFAILED: op 0 INVOKE_HOST_FUNCTION_TRAPPED", "SUCCESS": "txSUCCESS"}
    return TransactionOutcome(
        "ab" * 32, status, latest, oldest, ledger=ledger, result_code=code.get(status)
    )


@pytest.mark.parametrize(
    ("checkpoint", "answer", "expected"),
    [
        (20, outcome("FAILED", ledger=15), FAILED_ON_CHAIN),
        (5, outcome("FAILED", ledger=4), FAILED_ON_CHAIN),
        (20, outcome("NOT_FOUND"), NOT_FOUND),
        (5, outcome("NOT_FOUND"), PENDING),
        (20, outcome("NOT_FOUND", latest=9), None),
        (20, outcome("NOT_FOUND", oldest=11), MISSING_EXPECTED),
        (20, outcome("SUCCESS", ledger=9), MISSING_EXPECTED),
        (5, outcome("SUCCESS", ledger=4), PENDING),
        (20, None, MISSING_EXPECTED),
        (5, None, PENDING),
    ],
)
def test_each_answer_settles_as_the_rules_say(
    checkpoint: int, answer: TransactionOutcome | None, expected: str | None
) -> None:
    """Deadline 10: a failure settles at once; NOT_FOUND is trusted only once the deadline is
    processed and while the node holds its ledger (a node behind asks again later)."""
    assert verdict(10, checkpoint, answer) == expected


@pytest.fixture
def book(store: Store) -> Expectations:
    store.ensure_stream(10, "fp")
    return store.expectations


def test_a_failed_call_makes_its_record_due_before_the_deadline(
    book: Expectations, store: Store
) -> None:
    """A batch with a failed call of a pinned transaction marks the record due long before
    its deadline; FAILED then settles it failed_on_chain with the code and a discrepancy,
    while SUCCESS leaves another such record pending, to wait for its event."""
    book.create(
        [
            spec("failing", tx_hash=tx("f"), amount=5, deadline_ledger=500),
            spec("fine", tx_hash=tx("g"), amount=5, deadline_ledger=500),
            spec("unrelated", tx_hash=tx("h"), amount=5, deadline_ledger=500),
        ]
    )
    failed_calls = [
        transfer(10, 0, 5, label="f", successful=False),
        transfer(10, 1, 5, label="g", successful=False),
    ]
    store.commit_batch(batch(10, 10, failed_calls), hooks=[ExpectationMatcher(book)])
    due = {d.external_id: d for d in store.outcomes.due(10)}
    assert sorted(due) == ["failing", "fine"]
    assert store.outcomes.settle(due["failing"], outcome("FAILED", ledger=11)) == FAILED_ON_CHAIN
    assert store.outcomes.settle(due["fine"], outcome("SUCCESS", ledger=11)) == PENDING
    failing, fine = book.get("failing"), book.get("fine")
    assert failing is not None and fine is not None
    assert (failing["status"], failing["tx_ledger"]) == ("failed_on_chain", 11)
    assert failing["result_code"] == "txFAILED: op 0 INVOKE_HOST_FUNCTION_TRAPPED"
    assert (fine["status"], fine["outcome_due"], fine["tx_status"]) == ("pending", False, "SUCCESS")
    assert store.outcomes.due(10) == []
    (found,) = open_discrepancies(store, "failed_on_chain")
    assert found["subject"] == "failing" and "INVOKE_HOST_FUNCTION_TRAPPED" in found["message"]
    assert found["found"]["result_code"] == failing["result_code"]


def test_due_is_bounded_and_a_cancelled_record_is_not_settled(
    book: Expectations, store: Store
) -> None:
    """due(limit) gives at most `limit` records, oldest first; a record cancelled after it was
    read is left as it is (settle answers None)."""
    book.create(
        [spec(f"r{i}", tx_hash=tx(f"r{i}"), amount=1, deadline_ledger=12) for i in range(5)]
    )
    store.commit_batch(batch(10, 12), hooks=[ExpectationMatcher(book)])
    first = store.outcomes.due(3)
    assert [d.external_id for d in first] == ["r0", "r1", "r2"]
    store.lifecycle.cancel("r0", "admin")
    assert store.outcomes.settle(first[0], outcome("NOT_FOUND")) is None
    assert store.outcomes.settle(first[1], outcome("NOT_FOUND")) == NOT_FOUND
    record = book.get("r0")
    assert record is not None and record["status"] == "cancelled"
    assert [d.external_id for d in store.outcomes.due(10)] == ["r2", "r3", "r4"]
