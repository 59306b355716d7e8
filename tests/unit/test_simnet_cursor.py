"""Event ids and cursors of the simulated network follow stellar-rpc's format and order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stellar_reconciler.simnet.cursor import (
    EVENT_MAX,
    OP_MASK,
    TX_MASK,
    Cursor,
    CursorError,
    event_id,
    max_cursor,
)

cursors = st.builds(
    Cursor,
    st.integers(min_value=1, max_value=(1 << 31) - 1),
    st.integers(min_value=0, max_value=TX_MASK),
    st.integers(min_value=0, max_value=OP_MASK),
    st.integers(min_value=0, max_value=EVENT_MAX),
)


def test_recorded_testnet_id_decodes_to_its_ledger_tx_op_and_index() -> None:
    """The id of a recorded testnet transfer decodes to ledger 3727845, tx 5, op 0, event 1."""
    cursor = Cursor.parse("0016010972359577600-0000000001")
    assert cursor == Cursor(3727845, 5, 0, 1)
    assert str(cursor) == "0016010972359577600-0000000001"
    assert event_id(3727845, 5, 0, 1) == "0016010972359577600-0000000001"


@given(cursors)
def test_ids_round_trip(cursor: Cursor) -> None:
    """Formatting then parsing any cursor gives it back."""
    assert Cursor.parse(str(cursor)) == cursor


@given(cursors, cursors)
def test_id_strings_sort_like_cursors(a: Cursor, b: Cursor) -> None:
    """Zero-padded ids sort as text exactly as cursors sort by (ledger, tx, op, event)."""
    assert (str(a) < str(b)) == (a < b)


def test_max_cursor_is_the_end_of_a_ledger() -> None:
    """The max cursor of a ledger is after its refunds and before the next ledger."""
    end = max_cursor(1000)
    assert str(end) == f"{(1000 << 32) | (TX_MASK << 12) | OP_MASK:019d}-4294967295"
    assert Cursor(1000, TX_MASK, 0, 5) < end < Cursor(1001)


def test_after_wraps_the_event_index_like_a_uint32() -> None:
    """Resuming after a max cursor wraps the index to 0, still past every event of the ledger."""
    resumed = max_cursor(1000).after()
    assert resumed == Cursor(1000, TX_MASK, OP_MASK, 0)
    assert resumed > Cursor(1000, TX_MASK, 0, 7)
    assert Cursor(5, 1, 0, 3).after() == Cursor(5, 1, 0, 4)


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("abc", "invalid event id abc"),
        ("12x-0000000001", 'strconv.ParseInt: parsing "12x": invalid syntax'),
        ("1-99999999999", "value out of range"),
        ("1--1", "invalid syntax"),
    ],
)
def test_bad_ids_are_refused_with_the_servers_wording(text: str, detail: str) -> None:
    """Malformed ids raise CursorError naming the id, worded as stellar-rpc words it."""
    with pytest.raises(CursorError, match=detail):
        Cursor.parse(text)
