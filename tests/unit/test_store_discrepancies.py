"""Discrepancies on SQLite and PostgreSQL: a problem is open at most once, however long its key."""

from __future__ import annotations

from sqlalchemy import func, select

from stellar_reconciler.store import Store
from stellar_reconciler.store.database import write_transaction
from stellar_reconciler.store.discrepancies import NewDiscrepancy
from stellar_reconciler.store.schema import discrepancies
from stellar_reconciler.store.settlement import open_all

LONG_KEY = "unexpected:" + "x" * 250


def _long(message: str = "stray event") -> NewDiscrepancy:
    return NewDiscrepancy(kind="unexpected", key=LONG_KEY, message=message, first_ledger=7)


def _rows(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(discrepancies)).scalar_one())


def test_a_key_longer_than_the_column_opens_once(store: Store) -> None:
    """Opening a discrepancy with a 261-character key twice gives the same id, the second time
    not newly opened, and one row."""
    first_id, first_new = store.discrepancies.open(_long())
    again_id, again_new = store.discrepancies.open(_long("seen again"))
    assert (first_new, again_new) == (True, False)
    assert again_id == first_id
    assert _rows(store) == 1


def test_one_at_a_time_and_many_at_once_agree_on_long_keys(store: Store) -> None:
    """A long-keyed discrepancy opened singly is recognised by the batch path, and the other
    way round after it is resolved: never a second open row for one problem."""
    store.discrepancies.open(_long())
    with write_transaction(store.engine) as conn:
        assert open_all(conn, [_long(), _long()]) == 0
    assert store.discrepancies.resolve_key(LONG_KEY, "tester", "checked") == 1
    with write_transaction(store.engine) as conn:
        assert open_all(conn, [_long(), _long()]) == 1
    _, newly = store.discrepancies.open(_long())
    assert newly is False
    assert _rows(store) == 2
    assert store.discrepancies.open_counts()["unexpected"] == 1


def test_short_keys_still_tell_problems_apart(store: Store) -> None:
    """Two different short keys open two discrepancies; the same one twice opens one."""
    a = NewDiscrepancy(kind="gap", key="gap:1-2", message="gap")
    b = NewDiscrepancy(kind="gap", key="gap:3-4", message="gap")
    with write_transaction(store.engine) as conn:
        assert open_all(conn, [a, b, a]) == 2
    assert store.discrepancies.open(a)[1] is False
    assert _rows(store) == 2


def test_open_keys_lists_open_ones_of_a_kind_starting_in_the_range(store: Store) -> None:
    """open_keys: only open discrepancies of the kind asked, whose first ledger is in range."""

    def new(kind: str, key: str, ledger: int) -> NewDiscrepancy:
        return NewDiscrepancy(kind=kind, key=key, message="m", first_ledger=ledger)

    store.discrepancies.open(new("source_mismatch", "source_mismatch:lake:10", 10))
    store.discrepancies.open(new("source_mismatch", "source_mismatch:rpc:12", 12))
    store.discrepancies.open(new("source_mismatch", "source_mismatch:lake:30", 30))
    store.discrepancies.open(new("chain_break", "chain_break:11", 11))
    store.discrepancies.resolve_key("source_mismatch:rpc:12", "test", "gone")
    assert store.discrepancies.open_keys("source_mismatch", 10, 20) == [
        ("source_mismatch:lake:10", 10)
    ]
