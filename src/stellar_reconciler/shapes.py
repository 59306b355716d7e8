"""Event shapes: the ScVal types a contract emits under one event name, read off the XDR.

A contract upgrade can change what an event carries (an i128 amount becomes a map, or a
string) while its name stays the same; the JSON the service decodes can hide that (an i128
and a string of digits both decode to text). The shape is the type of each topic and of the
value, and for a map value its keys and their types, read straight from the base64 XDR: the
discriminant words only, values skipped without being built, so it costs little next to
decoding the event (bench/shapes.py measures both).

Pure: no I/O. The store records each (contract, name, shape) with the first ledger it was
seen and opens `shape_changed` when a new one follows (store/shapes.py).
"""

from __future__ import annotations

import binascii
import hashlib
import struct
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from stellar_sdk import xdr

from stellar_reconciler.errors import XdrSkipError
from stellar_reconciler.matching import parse_amount
from stellar_reconciler.models import Event, Json
from stellar_reconciler.xdrskip import skipper

# The field of a map value that carries the amount (matching.event_amount reads it).
AMOUNT_FIELD = "amount"
UNREADABLE = "unreadable"

_uint = struct.Struct(">I").unpack_from
_MAP = xdr.SCValType.SCV_MAP.value
_SYMBOL = xdr.SCValType.SCV_SYMBOL.value
_STRING = xdr.SCValType.SCV_STRING.value
_VEC = xdr.SCValType.SCV_VEC.value
_BYTES = xdr.SCValType.SCV_BYTES.value
_ADDRESS = xdr.SCValType.SCV_ADDRESS.value
_CONTRACT = xdr.SCAddressType.SC_ADDRESS_TYPE_CONTRACT.value
_ACCOUNT = xdr.SCAddressType.SC_ADDRESS_TYPE_ACCOUNT.value
_TYPE_NAMES = {kind.value: kind.name.removeprefix("SCV_").lower() for kind in xdr.SCValType}
# Bytes after the discriminant of the arms whose size is fixed.
_FIXED_SIZES = {
    xdr.SCValType[f"SCV_{name}"].value: size
    for name, size in (
        ("BOOL", 4),
        ("VOID", 0),
        ("U32", 4),
        ("I32", 4),
        ("U64", 8),
        ("I64", 8),
        ("TIMEPOINT", 8),
        ("DURATION", 8),
        ("U128", 16),
        ("I128", 16),
        ("U256", 32),
        ("I256", 32),
    )
}
# Every other arm (errors, contract instances, ledger keys...) is skipped the generated way.
_skip_any = skipper("SCVal")


def type_name(discriminant: int) -> str:
    return _TYPE_NAMES.get(discriminant, f"type_{discriminant}")


# A NamedTuple, not a frozen dataclass: one is built per event, and a tuple is built (and
# hashed, as a dictionary key) several times faster.
class Shape(NamedTuple):
    """The types of an event's topics and value; `fields` only for a map value, in order."""

    topics: tuple[str, ...]
    value: str
    fields: tuple[tuple[str, str], ...] = ()

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"topics": list(self.topics), "value": self.value}
        if self.value == "map":
            body["fields"] = dict(self.fields)
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Shape:
        fields = tuple((str(k), str(v)) for k, v in (body.get("fields") or {}).items())
        return cls(tuple(body["topics"]), str(body["value"]), fields)

    @property
    def digest(self) -> str:
        """Names this shape in keys and rows: equal shapes, equal digests."""
        return _digest(self)

    def text(self) -> str:
        """One line a person reads: `topics (symbol, address); value map {amount: i128}`."""
        value = self.value
        if value == "map":
            value = "map {" + ", ".join(f"{k}: {t}" for k, t in self.fields) + "}"
        return f"topics ({', '.join(self.topics)}); value {value}"


@lru_cache(maxsize=4096)
def _digest(shape: Shape) -> str:
    return hashlib.sha256(shape.text().encode()).hexdigest()[:32]


def shape_of(event: Event) -> Shape:
    """The shape of an event (an unreadable topic or value is typed `unreadable`)."""
    return shape_from_xdr(event.topics_xdr, event.value_xdr)


def shape_from_xdr(topics_xdr: Sequence[str], value_xdr: str) -> Shape:
    value, fields = _value_shape(value_xdr)
    # A list comprehension, not a generator: this runs for every event stored.
    return Shape(tuple([_topic_type(t) for t in topics_xdr]), value, fields)


@lru_cache(maxsize=65536)
def _topic_type(encoded: str) -> str:
    # Topics repeat (names, addresses): memoised on the text; the first 8 base64 characters
    # hold the 4-byte discriminant.
    return _discriminant_type(encoded[:8])


@lru_cache(maxsize=256)
def _discriminant_type(head: str) -> str:
    try:
        data = binascii.a2b_base64(head)
        return type_name(_uint(data, 0)[0])
    except (binascii.Error, struct.error):
        return UNREADABLE


def _value_shape(encoded: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    kind = _discriminant_type(encoded[:8])
    if kind != "map":
        return kind, ()
    try:
        return kind, _map_fields(binascii.a2b_base64(encoded))
    except (binascii.Error, struct.error, XdrSkipError, KeyError, UnicodeDecodeError):
        return UNREADABLE, ()


def _map_fields(data: bytes) -> tuple[tuple[str, str], ...]:
    (present,) = _uint(data, 4)
    if present == 0:
        return ()
    (count,) = _uint(data, 8)
    if count * 8 > len(data) - 12:
        raise struct.error("map count beyond the value's bytes")
    pos = 12
    fields = []
    for _ in range(count):
        (key_kind,) = _uint(data, pos)
        if key_kind in (_SYMBOL, _STRING):
            (size,) = _uint(data, pos + 4)
            key = data[pos + 8 : pos + 8 + size].decode()
        else:
            key = f"<{type_name(key_kind)}>"
        pos = _skip(data, pos)
        fields.append((key, type_name(_uint(data, pos)[0])))
        pos = _skip(data, pos)
    return tuple(fields)


def _skip(data: bytes, pos: int) -> int:
    """The position just past the ScVal at `pos`: the arms events use read here (about
    twice as fast as the generated skipper), the rest by it."""
    (kind,) = _uint(data, pos)
    size = _FIXED_SIZES.get(kind)
    if size is not None:
        return pos + 4 + size
    if kind in (_SYMBOL, _STRING, _BYTES):
        length: int = _uint(data, pos + 4)[0]
        return pos + 8 + length + (-length & 3)
    if kind == _ADDRESS:
        (address_kind,) = _uint(data, pos + 4)
        if address_kind == _CONTRACT:
            return pos + 40
        if address_kind == _ACCOUNT:
            return pos + 44
    elif kind in (_VEC, _MAP):
        (present,) = _uint(data, pos + 4)
        if present == 0:
            return pos + 8
        (count,) = _uint(data, pos + 8)
        pos += 12
        for _ in range(count * 2 if kind == _MAP else count):
            pos = _skip(data, pos)
        return pos
    end: int = _skip_any(data, pos)
    return end


def amount_problem(value: Json, shape: Shape) -> str | None:
    """Why no amount can be read from an event's value, naming the field and the type found;
    None when one can (matching.event_amount reads the value, or its `amount` field)."""
    if shape.value == "map" or isinstance(value, dict):
        if not isinstance(value, dict) or AMOUNT_FIELD not in value:
            keys = ", ".join(f"{k}: {t}" for k, t in shape.fields) or "none"
            return f"the value is a map without an `{AMOUNT_FIELD}` field (its fields: {keys})"
        found = dict(shape.fields).get(AMOUNT_FIELD, "unknown")
        return _not_whole(f"the value's `{AMOUNT_FIELD}` field", value[AMOUNT_FIELD], found)
    return _not_whole("the value", value, shape.value)


def _not_whole(where: str, value: Json, found: str) -> str | None:
    if isinstance(value, int | str) and not isinstance(value, bool):
        try:
            parse_amount(value)
            return None
        except ValueError:
            pass
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return f"{where} is a {found} ({shown}), not a whole number in the token's smallest unit"


def shape_change_text(contract_id: str, name: str, old: Shape, new: Shape, ledger: int) -> str:
    return (
        f"contract {contract_id} emits `{name}` events in another shape from ledger {ledger}: "
        f"{old.text()} before, {new.text()} now. A contract upgrade changed what it emits; "
        "check that expected records of this event can still be read (their amount, their "
        "topics), update your application if needed, then resolve this discrepancy"
    )
