"""Cursor: the position of an event, and its string form, the event id.

An event id is `"%019d-%010d" % (toid, event_index)` with
`toid = ledger << 32 | transaction << 12 | operation` (SEP-35 TOID). The transaction part is
1-based for operation events; stellar-rpc puts transaction-level events before all
transactions at transaction 0 and after all transactions at the largest transaction index.
"""

from __future__ import annotations

from dataclasses import dataclass

TX_MASK = (1 << 20) - 1
OP_MASK = (1 << 12) - 1
EVENT_MAX = (1 << 32) - 1
_INT64_MAX = (1 << 63) - 1


class CursorError(ValueError):
    """An event id that does not parse; the message follows stellar-rpc's wording."""


def toid(ledger: int, tx: int, op: int) -> int:
    """The SEP-35 total order id of an operation (or of a transaction-level slot)."""
    return (ledger << 32) | (tx << 12) | op


def event_id(ledger: int, tx: int, op: int, index: int) -> str:
    """The getEvents id of the index-th event at (ledger, tx, op)."""
    return f"{(ledger << 32) | (tx << 12) | op:019d}-{index:010d}"


@dataclass(frozen=True, order=True, slots=True)
class Cursor:
    """Where an event sits; ordering is (ledger, tx, op, event), the order ids sort in."""

    ledger: int
    tx: int = 0
    op: int = 0
    event: int = 0

    def __str__(self) -> str:
        return event_id(self.ledger, self.tx, self.op, self.event)

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """Parse an event id the way stellar-rpc does (split at the first '-')."""
        toid_text, sep, index_text = text.partition("-")
        if not sep:
            raise CursorError(f"invalid event id {text}")
        try:
            packed = _parse_int(toid_text, _INT64_MAX, "ParseInt")
            index = _parse_int(index_text, EVENT_MAX, "ParseUint", signed=False)
        except ValueError as exc:
            raise CursorError(f"invalid event id {text}: {exc}") from None
        if packed < 0:
            raise CursorError(f"invalid event id {text}: negative toid")
        return cls(packed >> 32, (packed >> 12) & TX_MASK, packed & OP_MASK, index)

    def after(self) -> Cursor:
        """The first position strictly after this one.

        stellar-rpc increments the event index as a uint32, so the maximum cursor of a
        ledger wraps to event 0 at (ledger, TX_MASK, OP_MASK): still after every event
        of that ledger. The wrap is reproduced so cursors behave exactly alike.
        """
        return Cursor(self.ledger, self.tx, self.op, (self.event + 1) & EVENT_MAX)


def max_cursor(ledger: int) -> Cursor:
    """The largest cursor inside `ledger`: where a not-full getEvents page ends."""
    return Cursor(ledger, TX_MASK, OP_MASK, EVENT_MAX)


def _parse_int(text: str, maximum: int, func: str, *, signed: bool = True) -> int:
    digits = text[1:] if signed and text[:1] in "+-" else text
    if not digits or not digits.isascii() or not digits.isdigit():
        raise ValueError(f'strconv.{func}: parsing "{text}": invalid syntax')
    value = int(text)
    if value > maximum or value < -maximum - 1:
        raise ValueError(f'strconv.{func}: parsing "{text}": value out of range')
    return value
