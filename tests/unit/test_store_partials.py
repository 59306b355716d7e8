"""Partial records and groups in the store, on SQLite and PostgreSQL: instalments across
batches, overshoot and shortfall at the deadline, groups, look-back, one claim per event,
and the lifecycle of group members."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from stellar_reconciler.errors import (
    ExpectationGroupMemberError,
    ExpectationGroupNotFoundError,
    ExpectationInputError,
    ExpectationSettledError,
)
from stellar_reconciler.expectations_csv import import_csv
from stellar_reconciler.models import Event
from stellar_reconciler.store import Store
from stellar_reconciler.store.expectations import ExpectationMatcher, Expectations
from tests.factories import CONTRACT, event_id
from tests.unit.test_store_expectations import ALICE, BOB, batch, spec, tx

MEMO_TOPIC = "3"


def pay(ledger: int, index: int, amount: int, memo: str = "inv") -> Event:
    """A transfer from ALICE to BOB carrying `memo` in its fourth topic."""
    return Event(
        id=event_id(ledger, index=index),
        type="contract",
        ledger=ledger,
        ledger_closed_at=datetime.fromtimestamp(1_700_000_000 + ledger * 5, tz=UTC),
        contract_id=CONTRACT,
        tx_hash=tx(f"{ledger}-{index}-{memo}"),
        transaction_index=1,
        operation_index=0,
        in_successful_contract_call=True,
        topics_xdr=("AAAADwAAAAh0cmFuc2Zlcg==",),
        value_xdr="AAAACgAAAAAAAAAAAAAAALLQXgA=",
        topics=("transfer", ALICE, BOB, memo),
        value=str(amount),
        name="transfer",
    )


def sum_spec(external_id: str, amount: int, memo: str = "inv", **fields: Any) -> Any:
    return spec(external_id, amount=amount, topics={"1": ALICE, MEMO_TOPIC: memo}, **fields)


@pytest.fixture
def book(store: Store) -> Expectations:
    """The expectations repository of a store whose stream starts at ledger 10."""
    store.ensure_stream(10, "fp")
    return store.expectations


def open_kind(store: Store, kind: str) -> list[dict[str, Any]]:
    return store.discrepancies.listing(kind=kind, is_open=True)


def test_instalments_across_batches_settle_partially_then_matched(
    book: Expectations, store: Store
) -> None:
    """100 paid as 30 (ledger 11) and 70 (ledger 13): partially_matched with 30 settled, 70
    outstanding and the event id, then matched with both events."""
    book.create([sum_spec("plan", 100, allow_partial=True)])
    hook = ExpectationMatcher(book, [CONTRACT])
    first, second = pay(11, 0, 30), pay(13, 0, 70)
    store.commit_batch(batch(10, 12, [first]), hooks=[hook])
    plan = book.get("plan")
    assert plan is not None
    assert (plan["status"], plan["settled_amount"], plan["outstanding_amount"]) == (
        "partially_matched",
        "30",
        "70",
    )
    assert plan["event_ids"] == [first.id] and plan["settled_at"] is None
    store.commit_batch(batch(13, 13, [second]), hooks=[hook])
    plan = book.get("plan")
    assert plan is not None
    assert (plan["status"], plan["settled_amount"], plan["outstanding_amount"]) == (
        "matched",
        "100",
        "0",
    )
    assert plan["event_ids"] == [first.id, second.id]
    # Claimed by the plan, so neither is reported unexpected.
    assert open_kind(store, "unexpected") == []
    assert book.counts()["matched"] == 1


def test_overshoot_and_shortfall_settle_amount_mismatch_at_the_deadline(
    book: Expectations, store: Store
) -> None:
    """Overshoot: 60 then 70 against 100 settles amount_mismatch +30 at the deadline (the
    70 is claimed then, not before, and its unexpected report closes). Short: 40 of 100 is
    amount_mismatch with 60 outstanding. Nothing at all: missing_expected. Each opens its
    discrepancy."""
    book.create(
        [
            sum_spec("over", 100, "o", allow_partial=True, deadline_ledger=14),
            sum_spec("short", 100, "s", allow_partial=True, deadline_ledger=14),
            sum_spec("none", 100, "n", allow_partial=True, deadline_ledger=14),
        ]
    )
    hook = ExpectationMatcher(book, [CONTRACT])
    events = [pay(11, 0, 60, "o"), pay(12, 0, 70, "o"), pay(12, 1, 40, "s")]
    store.commit_batch(batch(10, 13, events), hooks=[hook])
    over = book.get("over")
    assert over is not None and over["status"] == "partially_matched"
    assert over["event_ids"] == [events[0].id]
    # Nobody holds the 70 yet: reported, until the deadline claims it.
    assert [d["subject"] for d in open_kind(store, "unexpected")] == [events[1].id]
    store.commit_batch(batch(14, 14), hooks=[hook])
    assert open_kind(store, "unexpected") == []
    got = {x: book.get(x) for x in ("over", "short", "none")}
    assert got["over"] is not None and got["short"] is not None and got["none"] is not None
    assert (got["over"]["status"], got["over"]["difference"]) == ("amount_mismatch", "30")
    assert got["over"]["event_ids"] == [events[0].id, events[1].id]
    assert (got["short"]["status"], got["short"]["outstanding_amount"]) == (
        "amount_mismatch",
        "60",
    )
    assert got["short"]["difference"] == "-60"
    assert got["none"]["status"] == "missing_expected"
    mismatches = {d["subject"]: d for d in open_kind(store, "amount_mismatch")}
    assert set(mismatches) == {"over", "short"}
    assert "60 outstanding" in mismatches["short"]["message"]
    assert "resolve" in mismatches["over"]["message"]
    assert [d["subject"] for d in open_kind(store, "missing_expected")] == ["none"]


def test_a_record_posted_after_its_instalments_looks_back(book: Expectations, store: Store) -> None:
    """Instalments stored before the record is posted settle it on posting; the unexpected
    reports of those events close."""
    hook = ExpectationMatcher(book, [CONTRACT])
    store.commit_batch(batch(10, 12, [pay(11, 0, 25), pay(12, 0, 75)]), hooks=[hook])
    assert len(open_kind(store, "unexpected")) == 2
    (record,) = book.create([sum_spec("late", 100, allow_partial=True)]).records
    assert record["status"] == "matched" and len(record["event_ids"]) == 2
    assert open_kind(store, "unexpected") == []


def test_groups_settle_as_a_whole_by_one_transfer_or_several(
    book: Expectations, store: Store
) -> None:
    """Three invoices paid by one transfer of their sum; a payout of 90 as two records paid
    by three transfers. Each group, its members and its event ids are served as one."""
    book.create(
        [
            sum_spec("inv-1", 10, "g1", group_id="g1"),
            sum_spec("inv-2", 20, "g1", group_id="g1"),
            sum_spec("inv-3", 30, "g1", group_id="g1"),
            sum_spec("pay-a", 45, "g2", group_id="g2"),
            sum_spec("pay-b", 45, "g2", group_id="g2"),
        ]
    )
    hook = ExpectationMatcher(book, [CONTRACT])
    one = pay(11, 0, 60, "g1")
    several = [pay(11, 1, 40, "g2"), pay(12, 0, 20, "g2")]
    store.commit_batch(batch(10, 12, [one, *several]), hooks=[hook])
    g2 = store.groups.get("g2")
    assert (g2["status"], g2["settled_amount"], g2["outstanding_amount"]) == (
        "partially_matched",
        "60",
        "30",
    )
    assert [(m["external_id"], m["settled_amount"]) for m in g2["members"]] == [
        ("pay-a", "45"),
        ("pay-b", "15"),
    ]
    store.commit_batch(batch(13, 13, [pay(13, 0, 30, "g2")]), hooks=[hook])
    g1, g2 = store.groups.get("g1"), store.groups.get("g2")
    assert (g1["status"], g1["amount"], g1["event_ids"]) == ("matched", "60", [one.id])
    assert {m["status"] for m in g1["members"]} == {"matched"}
    assert (g2["status"], g2["settled_amount"], len(g2["event_ids"])) == ("matched", "90", 3)
    member = book.get("inv-2")
    assert member is not None and member["group_id"] == "g1" and member["event_ids"] == [one.id]
    assert open_kind(store, "unexpected") == []
    with pytest.raises(ExpectationGroupNotFoundError, match="no expected record has group_id"):
        store.groups.get("nope")


def test_an_event_is_claimed_by_one_record_only(book: Expectations, store: Store) -> None:
    """A one-event record and a partial record both fit a payment of 50: one claims it, the
    other does not count it."""
    book.create(
        [
            sum_spec("single", 50, "x"),
            sum_spec("plan", 100, "x", allow_partial=True),
        ]
    )
    store.commit_batch(batch(10, 11, [pay(11, 0, 50, "x")]), hooks=[ExpectationMatcher(book)])
    single, plan = book.get("single"), book.get("plan")
    assert single is not None and plan is not None
    holders = [r for r in (single, plan) if r["event_id"] or r.get("event_ids")]
    assert len(holders) == 1


def test_group_members_change_only_as_a_group(book: Expectations, store: Store) -> None:
    """Cancelling or moving one member's deadline is refused, naming the group endpoint;
    cancelling the group cancels every member and lets its events go."""
    book.create([sum_spec("a", 10, "g", group_id="g"), sum_spec("b", 20, "g", group_id="g")])
    store.commit_batch(batch(10, 11, [pay(11, 0, 10, "g")]), hooks=[ExpectationMatcher(book)])
    with pytest.raises(ExpectationGroupMemberError, match="/api/expectation-groups/g"):
        store.lifecycle.cancel("a", "admin")
    with pytest.raises(ExpectationGroupMemberError, match="member of group 'g'"):
        store.lifecycle.set_deadline("b", 30, None)
    group, changed = store.groups.cancel("g", "admin")
    assert changed and group["status"] == "cancelled" and group["event_ids"] == []
    assert store.groups.cancel("g", "admin")[1] is False
    # The released payment is free again: a record posted now takes it.
    (again,) = book.create([sum_spec("c", 10, "g")]).records
    assert again["status"] == "matched"


def test_a_partial_record_can_be_cancelled_or_moved_until_it_settles(
    book: Expectations, store: Store
) -> None:
    """partially_matched is still open: its deadline moves, and cancelling releases what it
    took; once matched it is a 409 like any settled record."""
    book.create(
        [sum_spec("plan", 100, allow_partial=True), sum_spec("done", 5, "d", allow_partial=True)]
    )
    store.commit_batch(
        batch(10, 11, [pay(11, 0, 30), pay(11, 1, 5, "d")]), hooks=[ExpectationMatcher(book)]
    )
    assert store.lifecycle.set_deadline("plan", 40, None).record["deadline_ledger"] == 40
    cancelled = store.lifecycle.cancel("plan", "admin").record
    assert cancelled["status"] == "cancelled" and cancelled["settled_amount"] == "0"
    assert (book.get("plan") or {})["event_ids"] == []
    with pytest.raises(ExpectationSettledError, match="matched"):
        store.lifecycle.cancel("done", "admin")


def test_groups_must_agree_and_a_settled_group_takes_no_member(
    book: Expectations, store: Store
) -> None:
    """Members with another deadline are refused naming the group's first record; a member
    posted to a matched group is refused too."""
    with pytest.raises(ExpectationInputError, match="same deadline_ledger"):
        book.create(
            [sum_spec("a", 1, group_id="g"), sum_spec("b", 1, group_id="g", deadline_ledger=30)]
        )
    book.create([sum_spec("a", 5, "h", group_id="h")])
    store.commit_batch(batch(10, 11, [pay(11, 0, 5, "h")]), hooks=[ExpectationMatcher(book)])
    with pytest.raises(ExpectationInputError, match="is matched already"):
        book.create([sum_spec("b", 5, "h", group_id="h")])


def test_sum_records_are_validated_with_clear_messages() -> None:
    """allow_partial with a group, no or a non-positive amount, a tx_hash, a non-boolean."""
    cases = {
        "not both": {"allow_partial": True, "group_id": "g", "amount": 5},
        "amount above 0": {"allow_partial": True, "amount": 0},
        "needs an amount": {"group_id": "g"},
        "tx_hash": {"allow_partial": True, "amount": 5, "tx_hash": "a" * 64},
        "valid boolean": {"allow_partial": "yes", "amount": 5},
    }
    for message, fields in cases.items():
        with pytest.raises(ValidationError, match=message):
            spec("x", **fields)


def test_csv_takes_allow_partial_and_group_id(book: Expectations, store: Store) -> None:
    """The CSV columns allow_partial (true/false, any case) and group_id; a bad cell names
    its line."""
    header = "external_id,contract_id,event_name,deadline_ledger,amount,allow_partial,group_id\n"
    good = header + f"p,{CONTRACT},transfer,20,100,TRUE,\nq,{CONTRACT},transfer,20,5,,g\n"
    assert import_csv(good, store).created == 2
    record = book.get("p")
    assert record is not None and record["allow_partial"] is True
    bad = header + f"r,{CONTRACT},transfer,20,100,maybe,\n"
    (error,) = import_csv(bad, store).errors
    assert error.line == 2 and "allow_partial" in error.message


PLANS = st.lists(st.lists(st.integers(1, 40), min_size=1, max_size=4), min_size=1, max_size=3)
_round = itertools.count()


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(PLANS, st.lists(st.integers(0, 7), max_size=4), st.integers(0, 8))
def test_batch_cuts_and_posting_moment_do_not_change_final_statuses(
    book: Expectations, store: Store, plans: list[list[int]], cuts: list[int], post_at: int
) -> None:
    """Random instalment sets (some one short), paid over 8 ledgers: whatever the batch
    cuts and whenever the records are posted (before, between or after the payments), each
    record ends as the model says: matched when all arrive, amount_mismatch when one is
    missing. Each example has its own ledgers and memos."""
    n = next(_round)
    start = store.checkpoint().ledger + 1
    hook = ExpectationMatcher(book)
    events, specs, expected = [], [], {}
    for i, parts in enumerate(plans):
        memo = f"r{n}-{i}"
        short = i == 1 and len(parts) > 1
        paid_parts = parts[:-1] if short else parts
        for j, amount in enumerate(paid_parts):
            events.append(pay(start + (j * 3 + i) % 8, i * 10 + j, amount, memo))
        specs.append(
            sum_spec(memo, sum(parts), memo, allow_partial=True, deadline_ledger=start + 8)
        )
        expected[memo] = "amount_mismatch" if short else "matched"
    ends = sorted({start + c for c in cuts} | {start + post_at, start + 8})
    previous = start - 1
    posted = post_at == 0
    if posted:
        book.create(specs)
    for end in ends:
        mine = [e for e in events if previous < e.ledger <= end]
        store.commit_batch(batch(previous + 1, end, sorted(mine, key=lambda e: e.id)), hooks=[hook])
        previous = end
        if not posted and end >= start + post_at:
            book.create(specs)
            posted = True
    got = {memo: (book.get(memo) or {}).get("status") for memo in expected}
    assert got == expected


def test_a_member_joining_an_open_group_keeps_what_the_group_took(
    book: Expectations, store: Store
) -> None:
    """A group partly paid (10 of 30) takes a new member of 20 (first by external id, so the
    group's lead changes): the 10 still counts, and 40 more settles the whole 50."""
    hook = ExpectationMatcher(book)
    book.create([sum_spec("m-b", 30, "g", group_id="g")])
    store.commit_batch(batch(10, 11, [pay(11, 0, 10, "g")]), hooks=[hook])
    assert store.groups.get("g")["status"] == "partially_matched"
    book.create([sum_spec("m-a", 20, "g", group_id="g")])
    store.commit_batch(batch(12, 12, [pay(12, 0, 40, "g")]), hooks=[hook])
    group = store.groups.get("g")
    assert (group["status"], group["settled_amount"], len(group["event_ids"])) == (
        "matched",
        "50",
        2,
    )


def test_a_group_posted_in_parts_may_end_otherwise_than_posted_whole(
    book: Expectations, store: Store
) -> None:
    """The README's example of why a group is posted whole: members of 100 and 5, paid 60,
    45 and 40. Posted whole, the group takes 60 and 45 and is matched at 105; its 100 posted
    alone before the payments takes 60 and 40, is matched at 100, and its 5 is refused."""
    book.create([sum_spec("w-100", 100, "w", group_id="w"), sum_spec("w-5", 5, "w", group_id="w")])
    book.create([sum_spec("p-100", 100, "p", group_id="p")])
    whole = [pay(11, 0, 60, "w"), pay(11, 1, 45, "w"), pay(12, 0, 40, "w")]
    parts = [pay(11, 2, 60, "p"), pay(11, 3, 45, "p"), pay(12, 1, 40, "p")]
    store.commit_batch(batch(10, 12, [*whole, *parts]), hooks=[ExpectationMatcher(book)])
    w, p = store.groups.get("w"), store.groups.get("p")
    assert (w["status"], w["settled_amount"], w["event_ids"]) == (
        "matched",
        "105",
        [whole[0].id, whole[1].id],
    )
    assert (p["status"], p["settled_amount"], p["event_ids"]) == (
        "matched",
        "100",
        [parts[0].id, parts[2].id],
    )
    with pytest.raises(ExpectationInputError, match="is matched already"):
        book.create([sum_spec("p-5", 5, "p", group_id="p")])


def test_a_repaired_range_keeps_the_parts_of_sums(book: Expectations, store: Store) -> None:
    """Re-committing stored ledgers (as repairs do) leaves the instalments with the matched
    plan: no one-event record takes them and none is reported unexpected."""
    hook = ExpectationMatcher(book, [CONTRACT])
    book.create([sum_spec("plan", 100, allow_partial=True)])
    repaired = batch(10, 11, [pay(10, 0, 40), pay(11, 0, 60)])
    store.commit_batch(repaired, [hook])
    book.create([sum_spec("single", 60, deadline_ledger=30)])
    store.replace_range(repaired, [hook])
    plan, single = book.get("plan"), book.get("single")
    assert plan is not None and single is not None
    assert plan["status"] == "matched" and len(plan["event_ids"]) == 2
    assert single["status"] == "pending" and single["event_id"] is None
    assert open_kind(store, "unexpected") == []


def test_a_dry_run_shows_what_a_sum_would_take_and_stores_nothing(
    book: Expectations, store: Store
) -> None:
    """A dry run of a partial record and of a group answers their sums from the stored
    payments; afterwards neither exists and the payments are still free."""
    payments = [pay(11, 0, 30), pay(11, 1, 50, "g")]
    store.commit_batch(batch(10, 11, payments), [ExpectationMatcher(book)])
    tried = store.lifecycle.dry_run(
        [
            sum_spec("plan", 100, allow_partial=True),
            sum_spec("g-1", 20, "g", group_id="g"),
            sum_spec("g-2", 30, "g", group_id="g"),
        ]
    )
    got = {r["external_id"]: r for r in tried.records}
    assert (got["plan"]["status"], got["plan"]["outstanding_amount"]) == ("partially_matched", "70")
    assert got["g-1"]["status"] == got["g-2"]["status"] == "matched"
    assert book.get("plan") is None and book.counts()["matched"] == 0
    (again,) = book.create([sum_spec("plan", 100, allow_partial=True)]).records
    assert again["settled_amount"] == "30"
