"""XDR to plain data, through stellar-sdk: ScVal topics and values, ledger headers, event ids.

Decoding ScVals through stellar-sdk's object tree costs tens of microseconds each, so the
common event shapes are read straight off the bytes by stellar_reconciler.scval, with
stellar-sdk as the reference and the fallback. Event topics also repeat a lot (the same
symbols and addresses over and over), so decoded segments are memoised by their base64 text.
The cache holds immutable JSON-ready values only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime
from functools import lru_cache

from stellar_sdk import Address, scval, xdr

from stellar_reconciler.errors import DecodeError, UnsupportedScValError
from stellar_reconciler.models import Event, Json, LedgerHeader, RawEvent
from stellar_reconciler.scval import scval_b64_to_json

# Field layout of an event id: TOID (ledger << 32 | tx << 12 | op) and a per-TOID event index.
_TX_BITS = 20
_OP_BITS = 12


_BIG_INTEGERS = frozenset(
    {
        xdr.SCValType.SCV_U64,
        xdr.SCValType.SCV_I64,
        xdr.SCValType.SCV_TIMEPOINT,
        xdr.SCValType.SCV_DURATION,
        xdr.SCValType.SCV_U128,
        xdr.SCValType.SCV_I128,
        xdr.SCValType.SCV_U256,
        xdr.SCValType.SCV_I256,
    }
)


def parse_event_id(event_id: str) -> tuple[int, int, int, int]:
    """Split an event id `"%019d-%010d"` into (ledger, tx index, op index, event index)."""
    toid_text, _, index_text = event_id.partition("-")
    if not toid_text.isdigit() or not index_text.isdigit():
        raise DecodeError(f"event id {event_id!r} is not of the form TOID-INDEX")
    toid = int(toid_text)
    return (
        toid >> 32,
        (toid >> _OP_BITS) & ((1 << _TX_BITS) - 1),
        toid & ((1 << _OP_BITS) - 1),
        int(index_text),
    )


def ledger_of_cursor(cursor: str) -> int:
    """The ledger an event cursor (an event id) points into."""
    return parse_event_id(cursor)[0]


def scval_to_json(value: xdr.SCVal) -> Json:
    """Render an ScVal as JSON: numbers over 32 bits as decimal strings, addresses as strkeys."""
    kind = value.type
    t = xdr.SCValType
    # Each branch checks the arm the discriminant selects; a value whose arm is missing falls
    # through to the lossless rendering at the end instead of raising.
    if kind == t.SCV_BOOL:
        return bool(value.b)
    if kind == t.SCV_VOID:
        return None
    if kind == t.SCV_SYMBOL and value.sym is not None:
        return value.sym.sc_symbol.decode("utf-8", "replace")
    if kind == t.SCV_STRING and value.str is not None:
        return value.str.sc_string.decode("utf-8", "replace")
    if kind == t.SCV_ADDRESS and value.address is not None:
        return Address.from_xdr_sc_address(value.address).address
    if kind == t.SCV_U32 and value.u32 is not None:
        return value.u32.uint32
    if kind == t.SCV_I32 and value.i32 is not None:
        return value.i32.int32
    if kind in _BIG_INTEGERS:
        # Integers over 32 bits exceed what JSON readers hold exactly (2**53): send text.
        return str(scval.to_native(value))
    if kind == t.SCV_BYTES and value.bytes is not None:
        return value.bytes.sc_bytes.hex()
    if kind == t.SCV_VEC:
        return [scval_to_json(item) for item in (value.vec.sc_vec if value.vec else [])]
    if kind == t.SCV_MAP:
        return _map_to_json(value.map.sc_map if value.map else [])
    if kind == t.SCV_ERROR and value.error is not None:
        return {"error": {"type": value.error.type.name, "code": _error_code(value.error)}}
    # Contract instances, nonce keys and executable tags never appear in events in practice;
    # keep them lossless rather than guess a shape.
    return {"xdr": value.to_xdr(), "type": kind.name}


def _error_code(error: xdr.SCError) -> int | str:
    if error.contract_code is not None:
        return int(error.contract_code.uint32)
    return error.code.name if error.code is not None else 0


def _map_to_json(entries: list[xdr.SCMapEntry]) -> Json:
    keys = [scval_to_json(entry.key) for entry in entries]
    if all(isinstance(key, str) for key in keys):
        return {key: scval_to_json(entry.val) for key, entry in zip(keys, entries, strict=True)}
    # Maps keyed by numbers, vectors or maps cannot be JSON objects; keep them as pairs.
    return [[key, scval_to_json(entry.val)] for key, entry in zip(keys, entries, strict=True)]


def decode_scval(encoded: str) -> Json:
    """Decode one base64 ScVal to JSON."""
    try:
        return scval_b64_to_json(encoded)
    except UnsupportedScValError:
        # Rare arms and malformed input: stellar-sdk decides their rendering and their error.
        return _decode_scval_with_sdk(encoded)


# Topics repeat (the same names and addresses over and over) and are worth memoising; event
# values (amounts, maps) are nearly all unique, so they are decoded without the cache, which
# would only hold memory.
decode_scval_b64 = lru_cache(maxsize=16384)(decode_scval)
decode_scval_b64.__doc__ = "Decode one base64 ScVal to JSON (memoised; never mutate the result)."


def _decode_scval_with_sdk(encoded: str) -> Json:
    try:
        value = xdr.SCVal.from_xdr(encoded)
    except (binascii.Error, ValueError, IndexError, EOFError, KeyError) as exc:
        raise DecodeError(f"not a base64 ScVal: {encoded[:40]!r}") from exc
    return scval_to_json(value)


def event_name(topics: tuple[Json, ...]) -> str | None:
    """Soroban contracts name an event by its first topic, a symbol (or a string)."""
    if topics and isinstance(topics[0], str):
        return topics[0]
    return None


# Every event of a ledger carries the same close time text; parsing it once per ledger is
# enough. Failures are not cached, so a bad value raises each time.
@lru_cache(maxsize=1024)
def _parse_closed_at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def decode_event(raw: RawEvent) -> Event:
    """Decode a raw getEvents entry's topics and value."""
    topics = tuple(map(decode_scval_b64, raw.topics_xdr))
    try:
        closed_at = _parse_closed_at(raw.ledger_closed_at)
    except ValueError as exc:
        raise DecodeError(f"event {raw.id}: ledgerClosedAt {raw.ledger_closed_at!r}") from exc
    # Positional: a NamedTuple is built several times faster from positions than keywords.
    return Event(
        raw.id,
        raw.type,
        raw.ledger,
        closed_at,
        raw.contract_id,
        raw.tx_hash,
        raw.transaction_index,
        raw.operation_index,
        raw.in_successful_contract_call,
        raw.topics_xdr,
        raw.value_xdr,
        topics,
        decode_scval(raw.value_xdr) if raw.value_xdr else None,
        event_name(topics),
    )


def _header_fields(header: xdr.LedgerHeader, header_bytes: bytes, meta_size: int) -> LedgerHeader:
    return LedgerHeader(
        sequence=header.ledger_seq.uint32,
        hash=hashlib.sha256(header_bytes).hexdigest(),
        previous_hash=header.previous_ledger_hash.hash.hex(),
        close_time=header.scp_value.close_time.time_point.uint64,
        protocol_version=header.ledger_version.uint32,
        meta_size=meta_size,
    )


def decode_history_entry(header_xdr: str, meta_size: int = 0) -> tuple[LedgerHeader, str]:
    """Decode getLedgers' `headerXdr` (a LedgerHeaderHistoryEntry).

    Returns the header with its hash recomputed as sha256 of the LedgerHeader XDR, and the
    hash the entry itself claims, so the caller can compare the two.
    """
    try:
        entry = xdr.LedgerHeaderHistoryEntry.from_xdr(header_xdr)
    except (binascii.Error, ValueError, IndexError, EOFError, KeyError) as exc:
        raise DecodeError("headerXdr is not a LedgerHeaderHistoryEntry") from exc
    header_bytes = entry.header.to_xdr_bytes()
    return _header_fields(entry.header, header_bytes, meta_size), entry.hash.hash.hex()


def decode_bare_header(header_xdr: str) -> LedgerHeader:
    """Decode getLatestLedger's `headerXdr`, which is a bare LedgerHeader."""
    try:
        raw = base64.b64decode(header_xdr, validate=True)
        header = xdr.LedgerHeader.from_xdr_bytes(raw)
    except (binascii.Error, ValueError, IndexError, EOFError, KeyError) as exc:
        raise DecodeError("headerXdr is not a LedgerHeader") from exc
    return _header_fields(header, raw, 0)
