"""The shape watch on SQLite and PostgreSQL: shapes recorded in the batch's transaction, one
shape_changed per change whatever is re-read, and amount_unreadable at the deadline."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy
from sqlalchemy import select
from stellar_sdk import scval

from stellar_reconciler.decode import decode_scval_b64
from stellar_reconciler.expectation_spec import ExpectationSpec
from stellar_reconciler.models import Event
from stellar_reconciler.store import ExpectationMatcher, ShapeWatch, Store
from stellar_reconciler.store.schema import event_shapes
from tests.factories import CONTRACT, event_id
from tests.unit.test_store_expectations import batch

OTHER = "CBATA4NZKQJANEL5HSLAFZ52CL2RVJ4AR6QUNMOUPCBJOA6QIXJRDDNX"
ALICE = "GAFCZPBOMB2PKPM6PKCXMITLXUL22A2T4PBYMKQS3VPYFI32B5RTHEKL"
I128 = {"topics": ["symbol", "address"], "value": "i128"}
AS_TEXT = {"topics": ["symbol", "address"], "value": "string"}


def transfer(ledger: int, value: Any, contract: str = CONTRACT, index: int = 0) -> Event:
    """A transfer from ALICE carrying `value` (an ScVal), alone in its transaction."""
    topics_xdr = (scval.to_symbol("transfer").to_xdr(), scval.to_address(ALICE).to_xdr())
    return Event(
        id=event_id(ledger, index=index),
        type="contract",
        ledger=ledger,
        ledger_closed_at=datetime.fromtimestamp(1_700_000_000 + ledger * 5, tz=UTC),
        contract_id=contract,
        tx_hash=f"{ledger:02d}{index:02d}".ljust(64, "a"),
        transaction_index=1,
        operation_index=0,
        in_successful_contract_call=True,
        topics_xdr=topics_xdr,
        value_xdr=value.to_xdr(),
        topics=tuple(decode_scval_b64(t) for t in topics_xdr),
        value=decode_scval_b64(value.to_xdr()),
        name="transfer",
    )


def old(ledger: int, contract: str = CONTRACT) -> Event:
    return transfer(ledger, scval.to_int128(100 + ledger), contract)


def new(ledger: int, contract: str = CONTRACT) -> Event:
    return transfer(ledger, scval.to_string(f"{ledger}.5000000"), contract)


def post(store: Store, *records: tuple[str, str | None, str | None, int]) -> None:
    """Expected transfers of CONTRACT: (external id, tx hash, amount, deadline ledger)."""
    store.expectations.create(
        [
            ExpectationSpec.model_validate(
                {
                    key: value
                    for key, value in (
                        ("external_id", name),
                        ("contract_id", CONTRACT),
                        ("event_name", "transfer"),
                        ("tx_hash", tx_hash),
                        ("amount", amount),
                        ("deadline_ledger", deadline),
                    )
                    if value is not None
                }
            )
            for name, tx_hash, amount, deadline in records
        ]
    )


def shape_changes(store: Store) -> list[dict[str, Any]]:
    return store.discrepancies.listing(kind="shape_changed")


def stored_shapes(store: Store) -> list[tuple[str, Any, int]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(event_shapes).order_by(event_shapes.c.first_ledger))
        return [(r.contract_id, r.shape, r.first_ledger) for r in rows]


def test_a_shape_change_opens_one_discrepancy_with_old_new_and_first_ledger(store: Store) -> None:
    """i128 transfers in ledgers 10-12, string ones from 13 (the batch cut inside): one
    shape_changed naming both shapes and ledger 13; both shapes stored with first ledgers."""
    store.ensure_stream(10, "fp")
    watch = ShapeWatch([CONTRACT])
    store.commit_batch(batch(10, 11, [old(10), old(11)]), [watch])
    store.commit_batch(batch(12, 14, [old(12), new(13), new(14)]), [watch])
    assert stored_shapes(store) == [(CONTRACT, I128, 10), (CONTRACT, AS_TEXT, 13)]
    [change] = shape_changes(store)
    assert change["open"] and change["first_ledger"] == 13
    assert change["subject"] == f"{CONTRACT}:transfer"
    assert change["expected"]["shape"] == I128
    assert change["found"]["shape"] == AS_TEXT
    assert change["found"]["first_event_id"] == event_id(13)
    assert "value i128 before, topics (symbol, address); value string now" in change["message"]


def test_restart_reingest_and_repair_do_not_open_it_again(store: Store) -> None:
    """A new watch (a restart) committing more of the new shape, a repair re-reading both
    shapes, and a resolved discrepancy followed by a re-read: still the one change."""
    store.ensure_stream(10, "fp")
    store.commit_batch(batch(10, 12, [old(10), new(12)]), [ShapeWatch([CONTRACT])])
    restarted = ShapeWatch([CONTRACT])
    store.commit_batch(batch(13, 14, [new(13), old(14)]), [restarted])
    store.replace_range(batch(10, 12, [old(10), old(11), new(12)]), [restarted])
    [change] = shape_changes(store)
    store.discrepancies.resolve(change["id"], "test", "seen")
    store.replace_range(batch(10, 14, [old(10), new(12), new(13)]), [ShapeWatch([CONTRACT])])
    assert [d["id"] for d in shape_changes(store)] == [change["id"]]
    assert len(stored_shapes(store)) == 2


def test_an_unwatched_contract_records_shapes_without_a_discrepancy(store: Store) -> None:
    """OTHER is not configured and no record names it: its shapes are kept, nothing opens;
    CONTRACT's change is watched because an expected record names its transfers."""
    store.ensure_stream(10, "fp")
    post(store, ("r", None, None, 11))
    watch = ShapeWatch()
    store.commit_batch(batch(10, 11, [old(10, OTHER), old(11)]), [watch])
    store.commit_batch(batch(12, 13, [new(12, OTHER), new(13)]), [watch])
    assert len(stored_shapes(store)) == 4
    [change] = shape_changes(store)
    assert change["subject"] == f"{CONTRACT}:transfer"


def test_a_record_whose_event_became_unreadable_settles_amount_unreadable(store: Store) -> None:
    """A pending record of 100 whose only fitting event carries a decimal string settles
    amount_unreadable at its deadline, naming the field and the type; a record with a
    readable event matches as before."""
    store.ensure_stream(10, "fp")
    post(store, ("late", new(12).tx_hash, "100", 14), ("paid", old(11).tx_hash, "111", 14))
    hooks = [ShapeWatch(), ExpectationMatcher(store.expectations)]
    store.commit_batch(batch(10, 12, [old(11), new(12)]), hooks)
    pending = store.expectations.get("late")
    assert pending is not None and pending["status"] == "pending"
    assert pending["unreadable_event_id"] == event_id(12)
    store.commit_batch(batch(13, 14, []), hooks)
    late, paid = store.expectations.get("late"), store.expectations.get("paid")
    assert late is not None and paid is not None
    assert paid["status"] == "matched"
    assert late["status"] == "amount_unreadable" and late["event_ledger"] == 12
    assert late["unreadable_reason"] == (
        "the value is a string ('12.5000000'), not a whole number in the token's smallest unit"
    )
    [finding] = store.discrepancies.listing(kind="amount_unreadable")
    assert finding["subject"] == "late" and "12.5000000" in finding["message"]
    assert store.discrepancies.listing(kind="missing_expected") == []
    assert store.expectations.counts()["amount_unreadable"] == 1


def test_a_record_posted_after_its_unreadable_event_says_why_too(store: Store) -> None:
    """Records posted after their event was stored (the look-back): one whose deadline has
    passed settles amount_unreadable at once; one still before its deadline keeps the note
    and settles so when the deadline's ledger is processed."""
    store.ensure_stream(10, "fp")
    hooks = [ShapeWatch(), ExpectationMatcher(store.expectations)]
    odd = transfer(12, scval.to_string("x"), index=1)
    store.commit_batch(batch(10, 13, [new(11), odd]), hooks)
    post(store, ("overdue", new(11).tx_hash, "5", 12), ("waiting", odd.tx_hash, "5", 15))
    overdue, waiting = store.expectations.get("overdue"), store.expectations.get("waiting")
    assert overdue is not None and waiting is not None
    assert overdue["status"] == "amount_unreadable"
    assert overdue["unreadable_reason"] == (
        "the value is a string ('11.5000000'), not a whole number in the token's smallest unit"
    )
    assert waiting["status"] == "pending" and waiting["unreadable_event_id"] == event_id(
        12, index=1
    )
    store.commit_batch(batch(14, 15, []), hooks)
    settled = store.expectations.get("waiting")
    assert settled is not None and settled["status"] == "amount_unreadable"
    assert "string ('x')" in settled["unreadable_reason"]


def test_known_shapes_are_read_once_then_never_queried_again(store: Store) -> None:
    """Map values whose fields PostgreSQL's JSONB reorders (memo before amount): the second
    batch reads the recorded shapes, the third touches the event_shapes table not at all."""
    store.ensure_stream(10, "fp")
    watch = ShapeWatch([CONTRACT])
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "event_shapes" in statement:
            statements.append(statement)

    def paid(ledger: int) -> Event:
        value = scval.to_map(
            {
                scval.to_symbol("amount"): scval.to_int128(ledger),
                scval.to_symbol("memo"): scval.to_string("rent"),
            }
        )
        return transfer(ledger, value)

    sqlalchemy.event.listen(store.engine, "before_cursor_execute", count)
    try:
        per_batch = []
        for first in (10, 12, 14):
            before = len(statements)
            store.commit_batch(batch(first, first + 1, [paid(first), paid(first + 1)]), [watch])
            per_batch.append(len(statements) - before)
    finally:
        sqlalchemy.event.remove(store.engine, "before_cursor_execute", count)
    assert per_batch[0] >= 2 and per_batch[1] == 1 and per_batch[2] == 0
    assert shape_changes(store) == []
