"""Expectations on SQLite and PostgreSQL: creating, settling in the batch, looking back, CSV."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from stellar_reconciler.errors import ExpectationConflictError, ExpectationInputError
from stellar_reconciler.expectation_spec import ExpectationSpec
from stellar_reconciler.expectations_csv import import_csv, parse_csv
from stellar_reconciler.models import Batch, Event, LedgerRecord
from stellar_reconciler.store import Store
from stellar_reconciler.store.expectations import ExpectationMatcher, Expectations
from stellar_reconciler.store.schema import expectations as expectations_table
from tests.factories import CONTRACT, event_id, ledger_hash

OTHER = "CBATA4NZKQJANEL5HSLAFZ52CL2RVJ4AR6QUNMOUPCBJOA6QIXJRDDNX"
ALICE = "GAFCZPBOMB2PKPM6PKCXMITLXUL22A2T4PBYMKQS3VPYFI32B5RTHEKL"
BOB = "GBNTF3YUJCXYIFQ7G2NU3MXBPC65RUGHBEXIUBIUFAYTTYLUA5QCPHBF"


def tx(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def transfer(
    ledger: int,
    index: int = 0,
    amount: int | str = 100,
    sender: str = ALICE,
    recipient: str = BOB,
    contract: str = CONTRACT,
    label: str | None = None,
    successful: bool = True,
) -> Event:
    topics = ("transfer", sender, recipient, f"USDC:{ALICE}")
    return Event(
        id=event_id(ledger, index=index),
        type="contract",
        ledger=ledger,
        ledger_closed_at=datetime.fromtimestamp(1_700_000_000 + ledger * 5, tz=UTC),
        contract_id=contract,
        tx_hash=tx(label or f"{ledger}-{index}"),
        transaction_index=1,
        operation_index=0,
        in_successful_contract_call=successful,
        topics_xdr=("AAAADwAAAAh0cmFuc2Zlcg==",),
        value_xdr="AAAACgAAAAAAAAAAAAAAALLQXgA=",
        topics=topics,
        value=str(amount),
        name="transfer",
    )


def batch(first: int, last: int, events: Sequence[Event] = ()) -> Batch:
    ledgers = tuple(
        LedgerRecord(
            sequence=s,
            hash=ledger_hash(s),
            previous_hash=ledger_hash(s - 1),
            closed_at=datetime.fromtimestamp(1_700_000_000 + s * 5, tz=UTC),
            event_count=sum(1 for e in events if e.ledger == s),
        )
        for s in range(first, last + 1)
    )
    return Batch(first, last, ledgers, tuple(events))


def spec(external_id: str, **fields: Any) -> ExpectationSpec:
    record = {
        "external_id": external_id,
        "contract_id": CONTRACT,
        "event_name": "transfer",
        "deadline_ledger": 20,
        **fields,
    }
    return ExpectationSpec.model_validate({k: v for k, v in record.items() if v is not None})


@pytest.fixture
def book(store: Store) -> Expectations:
    """The expectations repository of a store whose stream starts at ledger 10."""
    store.ensure_stream(10, "fp")
    return store.expectations


def open_discrepancies(store: Store, kind: str) -> list[dict[str, Any]]:
    return store.discrepancies.listing(kind=kind, is_open=True)


def test_records_are_created_pending_with_absolute_or_relative_deadlines(
    book: Expectations, store: Store
) -> None:
    """deadline_ledger is kept; deadline_ledgers counts from the checkpoint at creation."""
    store.commit_batch(batch(10, 14))
    created = book.create(
        [spec("a", amount=5), spec("b", deadline_ledger=None, deadline_ledgers=3)]
    )
    assert (created.created, created.existing) == (2, 0)
    a, b = created.records
    assert a["status"] == "pending" and a["deadline_ledger"] == 20 and a["amount"] == "5"
    assert b["deadline_ledger"] == 17 and b["deadline_ledgers"] == 3


def test_relative_deadline_before_any_ledger_is_refused(store: Store) -> None:
    """Without a checkpoint, deadline_ledgers has nothing to count from: an error, no rows."""
    book = store.expectations
    with pytest.raises(ExpectationInputError, match="deadline_ledger"):
        book.create([spec("a"), spec("b", deadline_ledger=None, deadline_ledgers=5)])
    assert book.counts()["pending"] == 0


def test_reposting_is_idempotent_and_changing_a_record_is_a_conflict(book: Expectations) -> None:
    """Same content again returns the stored record; other content creates nothing at all."""
    first = book.create([spec("a", amount=5, to=BOB)])
    again = book.create([spec("a", amount="5", topics={"2": BOB})])
    assert (again.created, again.existing) == (0, 1)
    assert again.records == first.records
    with pytest.raises(ExpectationConflictError, match="amount") as caught:
        book.create([spec("new"), spec("a", amount=6, to=BOB)])
    assert caught.value.conflicts == [("a", ["amount"])]
    assert book.get("new") is None


def test_a_request_repeating_an_id_with_other_content_is_refused(book: Expectations) -> None:
    """Two records with one external_id in one request: identical is fine, different is not."""
    assert book.create([spec("a"), spec("a")]).created == 1
    with pytest.raises(ExpectationInputError, match="record 1: external_id"):
        book.create([spec("b"), spec("b", amount=1)])


def test_batch_hook_settles_matched_mismatched_and_missing(
    book: Expectations, store: Store
) -> None:
    """In the batch's transaction: exact and in-tolerance payments match, a mismatching one
    settles amount_mismatch with the difference once its deadline passes, and a record whose
    deadline passes with no candidate is missing; discrepancies say so."""
    book.create(
        [
            spec("exact", tx_hash=tx("p1"), amount=100),
            spec("close", tx_hash=tx("p2"), amount=1000, tolerance=10),
            spec("short", tx_hash=tx("p3"), amount=500, deadline_ledger=12),
            spec("never", tx_hash=tx("none"), amount=1, deadline_ledger=12),
            spec("later", tx_hash=tx("none2"), deadline_ledger=99),
        ]
    )
    hook = ExpectationMatcher(book)
    events = [
        transfer(10, 0, 100, label="p1"),
        transfer(11, 0, 990, label="p2"),
        transfer(11, 1, 480, label="p3"),
    ]
    store.commit_batch(batch(10, 12, events), hooks=[hook])
    got = {eid: book.get(eid) for eid in ("exact", "close", "short", "never", "later")}
    assert {k: v["status"] for k, v in got.items() if v} == {
        "exact": "matched",
        "close": "matched",
        "short": "amount_mismatch",
        "never": "pending",
        "later": "pending",
    }
    # Pinned to a transaction and past its deadline: due an outcome check (getTransaction);
    # a node that cannot say settles it missing_expected.
    assert got["never"]["outcome_due"] and not got["later"]["outcome_due"]
    (due,) = store.outcomes.due(10)
    assert store.outcomes.settle(due, None, "the node does not serve it") == "missing_expected"
    assert store.outcomes.settle(due, None, "asked twice") is None
    assert got["exact"]["event_id"] == events[0].id
    assert got["close"]["difference"] == "-10"
    assert got["short"]["found_amount"] == "480" and got["short"]["difference"] == "-20"
    (mismatch,) = open_discrepancies(store, "amount_mismatch")
    assert mismatch["subject"] == "short" and mismatch["found"]["difference"] == "-20"
    assert "500" in mismatch["message"] and "resolve" in mismatch["message"]
    (missing,) = open_discrepancies(store, "missing_expected")
    assert missing["subject"] == "never" and missing["last_ledger"] == 12
    assert "ledger 12" in missing["message"] and "does not serve it" in missing["message"]
    assert book.counts() == {
        "pending": 1,
        "matched": 2,
        "amount_mismatch": 1,
        "missing_expected": 1,
        "failed_on_chain": 0,
        "not_found": 0,
        "amount_unreadable": 0,
        "cancelled": 0,
        "partially_matched": 0,
    }


def test_hook_work_rolls_back_with_a_failed_batch(book: Expectations, store: Store) -> None:
    """A batch that fails after the hook ran leaves every expectation as it was."""
    book.create([spec("exact", tx_hash=tx("p1"), amount=100)])

    def explode(_conn: object, _batch: Batch) -> None:
        raise RuntimeError("later hook failed")

    with pytest.raises(RuntimeError):
        store.commit_batch(
            batch(10, 10, [transfer(10, 0, label="p1")]), [ExpectationMatcher(book), explode]
        )
    assert book.get("exact")["status"] == "pending"
    assert store.checkpoint().ledger == 9


def test_a_repaired_range_keeps_its_claims_and_reports_nothing_twice(
    book: Expectations, store: Store
) -> None:
    """Re-committing stored ledgers through the hook (as repairs do) leaves claimed events
    with their claimants, and an open unexpected report is not opened a second time."""
    hook = ExpectationMatcher(book, unexpected_contracts=[CONTRACT])
    book.create([spec("first", to=BOB)])
    repaired = batch(10, 10, [transfer(10, 0), transfer(10, 1, sender=BOB, recipient=ALICE)])
    store.commit_batch(repaired, [hook])
    book.create([spec("second", to=BOB)])
    store.replace_range(repaired, [hook])
    assert book.get("first")["event_id"] == repaired.events[0].id
    assert book.get("second")["status"] == "pending"
    (stray,) = open_discrepancies(store, "unexpected")
    assert stray["subject"] == repaired.events[1].id


def test_unclaimed_events_of_watched_contracts_are_unexpected(
    book: Expectations, store: Store
) -> None:
    """Only contracts listed as watched report unclaimed events; claimed ones never do;
    events of failed calls are neither matched nor reported."""
    book.create([spec("mine", tx_hash=tx("p1"))])
    hook = ExpectationMatcher(book, unexpected_contracts=[CONTRACT])
    events = [
        transfer(10, 0, label="p1"),
        transfer(10, 1, label="stray"),
        transfer(10, 2, contract=OTHER),
        transfer(10, 3, label="failed", successful=False),
    ]
    store.commit_batch(batch(10, 10, events), hooks=[hook])
    (stray,) = open_discrepancies(store, "unexpected")
    assert stray["subject"] == events[1].id
    assert "post the expected record" in stray["message"]


def test_late_record_matches_a_stored_event_and_closes_its_unexpected(
    book: Expectations, store: Store
) -> None:
    """Posted after its event was stored, a record is matched at once, and the unexpected
    discrepancy that event raised is resolved."""
    hook = ExpectationMatcher(book, unexpected_contracts=[CONTRACT])
    paid = transfer(11, 0, amount=70, label="late")
    store.commit_batch(batch(10, 12, [paid]), hooks=[hook])
    assert len(open_discrepancies(store, "unexpected")) == 1
    (record,) = book.create([spec("late", tx_hash=tx("late"), amount=70)]).records
    assert record["status"] == "matched" and record["event_id"] == paid.id
    assert open_discrepancies(store, "unexpected") == []
    (closed,) = store.discrepancies.listing(kind="unexpected", is_open=False)
    assert closed["resolved_by"] == "expectations" and "'late'" in closed["resolution"]


def test_look_back_without_a_transaction_uses_topics_and_skips_claimed_events(
    book: Expectations, store: Store
) -> None:
    """Loose records find stored events by topics; among records alike, the earliest deadline
    (then the smaller external id) takes the earliest event; a record whose deadline has
    passed with nothing left for it is missing at once."""
    events = [transfer(10, 0, 100), transfer(11, 0, 100), transfer(12, 0, 100, recipient=ALICE)]
    store.commit_batch(batch(10, 13, events))
    created = book.create(
        [
            spec("first", to=BOB, amount=100),
            spec("second", to=BOB, amount=100),
            spec("third", to=BOB, amount=100, deadline_ledger=13),
            spec("to-alice", to=ALICE),
        ]
    )
    by_id = {r["external_id"]: r for r in created.records}
    assert by_id["third"]["event_id"] == events[0].id
    assert by_id["first"]["event_id"] == events[1].id
    assert by_id["second"]["status"] == "pending"
    assert by_id["to-alice"]["event_id"] == events[2].id


def test_huge_amounts_and_map_values_compare_exactly(book: Expectations, store: Store) -> None:
    """i128 amounts beyond 2**64 keep every digit; a map value's `amount` field is read."""
    big = 2**100 + 1
    funded = transfer(10, 1, label="map")
    funded = funded._replace(value={"amount": "42", "funder": ALICE})
    book.create(
        [
            spec("big", tx_hash=tx("big"), amount=str(big - 1)),
            spec("map", tx_hash=tx("map"), amount=42),
        ]
    )
    store.commit_batch(
        batch(10, 10, [transfer(10, 0, amount=big, label="big"), funded]),
        [ExpectationMatcher(book)],
    )
    assert book.get("big")["difference"] == "1"
    assert book.get("big")["found_amount"] == str(big)
    assert book.get("map")["status"] == "matched"


def test_listing_pages_by_status_and_summary_counts(book: Expectations, store: Store) -> None:
    """Listing filters by status and pages in creation order; the summary has the rate."""
    book.create([spec(f"r{i}", tx_hash=tx(f"p{i}"), amount=100) for i in range(5)])
    store.commit_batch(
        batch(10, 10, [transfer(10, i, 100, label=f"p{i}") for i in range(3)]),
        [ExpectationMatcher(book)],
    )
    page, cursor = book.listing(status="matched", limit=2)
    assert [r["external_id"] for r in page] == ["r0", "r1"] and cursor is not None
    rest, end = book.listing(status="matched", after=cursor, limit=2)
    assert [r["external_id"] for r in rest] == ["r2"] and end is None
    summary = book.summary()
    assert summary["expectations"] == {
        "pending": 2,
        "matched": 3,
        "amount_mismatch": 0,
        "missing_expected": 0,
        "failed_on_chain": 0,
        "not_found": 0,
        "amount_unreadable": 0,
        "cancelled": 0,
        "partially_matched": 0,
        "total": 5,
    }
    assert summary["match_rate"] == 1.0
    assert summary["oldest_pending"]["external_id"] == "r3"
    assert summary["checkpoint"] == 10


def test_the_database_refuses_one_event_for_two_records(book: Expectations, store: Store) -> None:
    """Whatever the code does, the unique index keeps an event with one expectation."""
    book.create([spec("a"), spec("b")])
    with store.engine.begin() as conn:
        conn.execute(
            expectations_table.update()
            .where(expectations_table.c.external_id == "a")
            .values(event_id="e1")
        )
    with pytest.raises(Exception, match=r"(?i)unique"), store.engine.begin() as conn:
        conn.execute(
            expectations_table.update()
            .where(expectations_table.c.external_id == "b")
            .values(event_id="e1")
        )
    with store.engine.connect() as conn:
        assert conn.execute(select(expectations_table.c.event_id)).scalars().all().count("e1") == 1


CSV = """external_id,contract_id,event_name,tx_hash,from,to,amount,tolerance,deadline_ledger,topic3
inv-1,{c},transfer,{h},{a},{b},100,0,50,
inv-2,{c},transfer,,,{b},"250",5,60,USDC:{a}
""".format(c=CONTRACT, h=tx("p1"), a=ALICE, b=BOB)


def test_csv_import_creates_every_row_and_is_repeatable(book: Expectations, store: Store) -> None:
    """A good file imports every row; importing it again finds them all existing."""
    report = import_csv(CSV, store)
    assert report.ok and (report.rows, report.created, report.existing) == (2, 2, 0)
    assert book.get("inv-2")["topics"] == {"2": BOB, "3": f"USDC:{ALICE}"}
    again = import_csv(CSV, store)
    assert (again.created, again.existing) == (0, 2)
    assert store.audit.listing()[0]["action"] == "expectations.import"


def test_csv_bad_rows_are_reported_by_line_and_nothing_is_imported(
    book: Expectations, store: Store, tmp_path: Path
) -> None:
    """Every bad row is named by its line number, and not even the good rows are imported."""
    bad = CSV + (
        f"inv-3,{CONTRACT},transfer,,,,12.5,,70,\n"
        "\n"
        f"inv-4,NOTACONTRACT,transfer,,,,1,,,\n"
        f"inv-5,{CONTRACT},transfer\n"
    )
    path = tmp_path / "expected.csv"
    path.write_text(bad)
    report = import_csv(path, store)
    assert not report.ok
    lines = sorted({e.line for e in report.errors})
    assert lines == [4, 6, 7]
    messages = " | ".join(str(e) for e in report.errors)
    assert "line 4: amount:" in messages and "whole number" in messages
    assert "line 6: contract_id: must be a contract strkey" in messages
    assert "line 7: has 3 cells" in messages
    assert book.counts()["pending"] == 0


def test_csv_header_problems_and_conflicts_are_reported(book: Expectations, store: Store) -> None:
    """Unknown or missing columns stop at line 1; a changed record names its line."""
    _, errors = parse_csv("external_id,contract,event_name\n")
    assert [str(e) for e in errors] == [
        "line 1: unknown column 'contract' (known: "
        + ", ".join(
            (
                "external_id",
                "contract_id",
                "event_name",
                "deadline_ledger",
                "deadline_ledgers",
                "amount",
                "tolerance",
                "tx_hash",
                "from",
                "to",
                "topic1",
                "topic2",
                "topic3",
                "allow_partial",
                "group_id",
            )
        )
        + ")",
        "line 1: required column 'contract_id' is missing",
    ]
    assert import_csv(CSV, store).ok
    changed = CSV.replace(",100,0,50,", ",101,0,50,")
    report = import_csv(changed, store)
    assert [(e.line, "amount" in e.message) for e in report.errors] == [(2, True)]


CAROL = "GD7YF7WOGHCMZKSQ3TDVPXY3UT3V6SJ2QL5C4TOFQ4IHK4UJUAWSVH3C"


def test_records_posted_after_their_exact_events_match_them_not_older_transfers(
    book: Expectations, store: Store
) -> None:
    """The usual order (the app writes its record after submitting): three records posted after
    their exact transfers, with older transfers between the same counterparties of other amounts
    in the store, all settle matched against the exact events, and nothing cries wolf."""
    pairs = [(ALICE, BOB), (BOB, CAROL), (CAROL, ALICE)]
    older = [
        transfer(10 + n, i, amount=289_851_775_821 + 1000 * i + n, sender=a, recipient=b)
        for n, (a, b) in enumerate(pairs)
        for i in range(3)
    ]
    exact = [
        transfer(14, n, amount=5_000_000 + n, sender=a, recipient=b)
        for n, (a, b) in enumerate(pairs)
    ]
    store.commit_batch(batch(10, 15, [*older, *exact]), hooks=[ExpectationMatcher(book)])
    created = book.create(
        [
            spec(
                f"late-{n}",
                amount=5_000_000 + n,
                deadline_ledger=None,
                deadline_ledgers=50,
                **{"from": a, "to": b},
            )
            for n, (a, b) in enumerate(pairs)
        ]
    )
    assert [(r["status"], r["event_id"]) for r in created.records] == [
        ("matched", e.id) for e in exact
    ]
    assert open_discrepancies(store, "amount_mismatch") == []


def test_a_mismatch_waits_for_its_deadline_and_an_exact_event_then_wins(
    book: Expectations, store: Store
) -> None:
    """A mismatching transfer makes the record show a candidate, not a verdict; the exact one
    arriving before the deadline settles it matched; with none, the closest candidate settles
    it amount_mismatch at the deadline."""
    book.create(
        [
            spec("waits", amount=100, deadline_ledger=14, **{"from": ALICE, "to": BOB}),
            spec("misses", amount=100, deadline_ledger=14, **{"from": BOB, "to": CAROL}),
        ]
    )
    hook = ExpectationMatcher(book)
    near = transfer(10, 1, amount=90, sender=BOB, recipient=CAROL)
    store.commit_batch(
        batch(
            10,
            11,
            [
                transfer(10, 0, amount=70),
                near,
                transfer(11, 0, amount=60, sender=BOB, recipient=CAROL),
            ],
        ),
        hooks=[hook],
    )
    waits, misses = book.get("waits"), book.get("misses")
    assert waits is not None and misses is not None
    assert waits["status"] == "pending" and waits["difference"] == "-30"
    assert misses["status"] == "pending" and misses["found_amount"] == "90"
    right = transfer(12, 0, amount=100)
    store.commit_batch(batch(12, 14, [right]), hooks=[hook])
    waits, misses = book.get("waits"), book.get("misses")
    assert waits is not None and misses is not None
    assert (waits["status"], waits["event_id"]) == ("matched", right.id)
    assert (misses["status"], misses["event_id"], misses["difference"]) == (
        "amount_mismatch",
        near.id,
        "-10",
    )
    (alarm,) = open_discrepancies(store, "amount_mismatch")
    assert alarm["subject"] == "misses"


def test_a_record_posted_late_takes_its_exact_event_from_an_amount_mismatch(
    book: Expectations, store: Store
) -> None:
    """An event settled as one record's amount mismatch goes to a record posted later that it
    fits exactly; the first record settles again on its next candidate, then, when that too
    is taken, as missing; each old alarm is resolved naming who took the event."""
    book.create([spec("early", amount=100, deadline_ledger=12, **{"from": ALICE, "to": BOB})])
    near, far = transfer(10, 0, amount=70), transfer(11, 0, amount=40)
    store.commit_batch(batch(10, 13, [near, far]), hooks=[ExpectationMatcher(book)])
    early = book.get("early")
    assert early is not None
    assert (early["status"], early["event_id"]) == ("amount_mismatch", near.id)

    (late,) = book.create(
        [spec("late", amount=70, deadline_ledger=30, **{"from": ALICE, "to": BOB})]
    ).records
    assert (late["status"], late["event_id"]) == ("matched", near.id)
    early = book.get("early")
    assert early is not None
    assert (early["status"], early["event_id"], early["difference"]) == (
        "amount_mismatch",
        far.id,
        "-60",
    )
    (alarm,) = open_discrepancies(store, "amount_mismatch")
    assert alarm["subject"] == "early" and alarm["found"]["event_id"] == far.id
    (closed,) = store.discrepancies.listing(kind="amount_mismatch", is_open=False)
    assert "'late'" in closed["resolution"] and near.id in closed["resolution"]

    book.create([spec("later", amount=40, deadline_ledger=30, **{"from": ALICE, "to": BOB})])
    early, later = book.get("early"), book.get("later")
    assert early is not None and later is not None
    assert (later["status"], later["event_id"]) == ("matched", far.id)
    assert (early["status"], early["event_id"]) == ("missing_expected", None)
    assert open_discrepancies(store, "amount_mismatch") == []
    (missing,) = open_discrepancies(store, "missing_expected")
    assert missing["subject"] == "early"


def test_a_blocked_record_waits_past_its_deadline_while_its_event_may_be_freed(
    book: Expectations, store: Store
) -> None:
    """A record posted late whose exact event a record with a later deadline holds is not
    called missing at its own deadline: when the holder's own payment comes, the holder moves
    to it and the late record is matched; a third record alike is missing once no holder of
    its exact event can still move."""
    book.create([spec("holder", amount=100, deadline_ledger=30, **{"from": ALICE, "to": BOB})])
    hook = ExpectationMatcher(book)
    first = transfer(10, 0, amount=100)
    store.commit_batch(batch(10, 11, [first]), hooks=[hook])
    book.create(
        [
            spec("late", amount=100, deadline_ledger=13, **{"from": ALICE, "to": BOB}),
            spec("lost", amount=100, deadline_ledger=13, **{"from": ALICE, "to": BOB}),
        ]
    )
    store.commit_batch(batch(12, 20), hooks=[hook])
    late, lost = book.get("late"), book.get("lost")
    assert late is not None and lost is not None
    assert (late["status"], lost["status"]) == ("pending", "pending")
    assert open_discrepancies(store, "missing_expected") == []

    second = transfer(21, 0, amount=100)
    store.commit_batch(batch(21, 29, [second]), hooks=[hook])
    late, holder, lost = book.get("late"), book.get("holder"), book.get("lost")
    assert late is not None and holder is not None and lost is not None
    assert (late["status"], late["event_id"]) == ("matched", first.id)
    assert (holder["status"], holder["event_id"]) == ("matched", second.id)
    # Its one exact event now belongs to "late", whose deadline is past: nothing can free it.
    assert lost["status"] == "missing_expected"


DAVE = "GDVEU3DD4KOFECV66VIHWEZOYX4ZKR3WV27L464SIIPOU2IUI3JCZA57"


def test_an_event_freed_two_moves_away_reaches_the_blocked_record(
    book: Expectations, store: Store
) -> None:
    """A blocked record's exact event is held by a record that can move only to an event a
    third record holds: the blocked record waits past the first holder's deadline for the
    third's, and when the third record's own payment comes (matching neither the blocked
    record nor the first holder), both holders move and the blocked record is matched, not
    called missing."""
    book.create(
        [
            spec("from-alice", amount=100, deadline_ledger=18, **{"from": ALICE}),
            spec("to-dave", amount=100, deadline_ledger=40, to=DAVE),
        ]
    )
    hook = ExpectationMatcher(book)
    to_bob = transfer(10, 0, amount=100, sender=ALICE, recipient=BOB)
    to_dave = transfer(11, 0, amount=100, sender=ALICE, recipient=DAVE)
    store.commit_batch(batch(10, 11, [to_bob, to_dave]), hooks=[hook])
    assert book.get("from-alice")["event_id"] == to_bob.id
    assert book.get("to-dave")["event_id"] == to_dave.id
    book.create([spec("late", amount=100, deadline_ledger=13, **{"from": ALICE, "to": BOB})])
    store.commit_batch(batch(12, 20), hooks=[hook])
    assert book.get("late")["status"] == "pending"

    carol_to_dave = transfer(21, 0, amount=100, sender=CAROL, recipient=DAVE)
    store.commit_batch(batch(21, 45, [carol_to_dave]), hooks=[hook])
    settled = {x: book.get(x) for x in ("late", "from-alice", "to-dave")}
    assert {x: (r["status"], r["event_id"]) for x, r in settled.items()} == {
        "late": ("matched", to_bob.id),
        "from-alice": ("matched", to_dave.id),
        "to-dave": ("matched", carol_to_dave.id),
    }
    assert open_discrepancies(store, "missing_expected") == []


def test_a_record_whose_candidate_another_took_settles_on_the_next_closest(
    book: Expectations, store: Store
) -> None:
    """Two records show the same closest candidate; the first to reach its deadline takes it,
    and the second settles on the next closest event of an earlier batch, not as missing."""
    book.create(
        [
            spec("sooner", amount=100, deadline_ledger=12, **{"from": ALICE, "to": BOB}),
            spec("later", amount=100, deadline_ledger=14, **{"from": ALICE, "to": BOB}),
        ]
    )
    hook = ExpectationMatcher(book)
    near, far = transfer(10, 0, amount=90), transfer(11, 0, amount=80)
    store.commit_batch(batch(10, 11, [near, far]), hooks=[hook])
    store.commit_batch(batch(12, 13), hooks=[hook])
    store.commit_batch(batch(14, 14), hooks=[hook])
    sooner, later = book.get("sooner"), book.get("later")
    assert sooner is not None and later is not None
    assert (sooner["status"], sooner["event_id"]) == ("amount_mismatch", near.id)
    assert (later["status"], later["event_id"], later["difference"]) == (
        "amount_mismatch",
        far.id,
        "-20",
    )


def test_settled_records_wait_for_nats_until_marked_published(
    book: Expectations, store: Store
) -> None:
    """Records that settle are listed for publishing once, pending ones never; a record that
    settled differently after it was read keeps waiting."""
    book.create(
        [
            spec("exact", tx_hash=tx("p1"), amount=100),
            spec("never", event_name="mint", amount=1, deadline_ledger=12),
            spec("later", tx_hash=tx("none2"), deadline_ledger=99),
        ]
    )
    assert book.unpublished(10) == []
    hook = ExpectationMatcher(book)
    store.commit_batch(batch(10, 12, [transfer(10, 0, 100, label="p1")]), hooks=[hook])
    waiting = book.unpublished(10)
    assert [(body["external_id"], body["status"]) for _, body in waiting] == [
        ("exact", "matched"),
        ("never", "missing_expected"),
    ]
    stale = [(waiting[0][0], {**waiting[0][1], "status": "amount_mismatch"})]
    book.mark_published(stale)
    assert len(book.unpublished(10)) == 2
    book.mark_published(waiting)
    assert book.unpublished(10) == []
