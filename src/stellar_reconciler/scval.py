"""A direct reader of the ScVal shapes contract events carry, straight off the XDR bytes.

stellar-sdk builds an object for every XDR node and decode.scval_to_json then walks that
tree; for the arms events actually use, reading the bytes in place is several times faster.
The reader answers only where it is sure to give what scval_to_json gives for the same
bytes. Other arms, malformed or non-canonical input raise UnsupportedScValError, and the
caller decodes the stellar-sdk way, which stays the reference for rare shapes and errors.

XDR layout follows RFC 4506 as stellar-sdk reads it: big-endian 4-byte words, discriminants
first, variable opaques padded with zeros to 4 bytes, optional fields behind a 0/1 word.
"""

from __future__ import annotations

import binascii
import struct
from functools import lru_cache
from typing import Any

from stellar_sdk import StrKey, xdr

from stellar_reconciler.errors import UnsupportedScValError

# Nesting of vectors and maps the reader follows; deeper values (never seen in events) go
# the stellar-sdk way, which enforces its own depth limit and error.
MAX_DEPTH = 64

_T = xdr.SCValType
_BOOL = _T.SCV_BOOL.value
_VOID = _T.SCV_VOID.value
_U32 = _T.SCV_U32.value
_I32 = _T.SCV_I32.value
_U64 = _T.SCV_U64.value
_I64 = _T.SCV_I64.value
_TIMEPOINT = _T.SCV_TIMEPOINT.value
_DURATION = _T.SCV_DURATION.value
_U128 = _T.SCV_U128.value
_I128 = _T.SCV_I128.value
_U256 = _T.SCV_U256.value
_I256 = _T.SCV_I256.value
_BYTES = _T.SCV_BYTES.value
_STRING = _T.SCV_STRING.value
_SYMBOL = _T.SCV_SYMBOL.value
_VEC = _T.SCV_VEC.value
_MAP = _T.SCV_MAP.value
_ADDRESS = _T.SCV_ADDRESS.value
_ACCOUNT = xdr.SCAddressType.SC_ADDRESS_TYPE_ACCOUNT.value
_CONTRACT = xdr.SCAddressType.SC_ADDRESS_TYPE_CONTRACT.value
_ED25519 = xdr.PublicKeyType.PUBLIC_KEY_TYPE_ED25519.value
_SYMBOL_LIMIT: int = xdr.SCSYMBOL_LIMIT
# Byte width of the fixed-size integers rendered as decimal text, and their signedness.
_WIDE_INTEGERS = {
    _U64: (8, False),
    _I64: (8, True),
    _TIMEPOINT: (8, False),
    _DURATION: (8, False),
    _U128: (16, False),
    _I128: (16, True),
    _U256: (32, False),
    _I256: (32, True),
}
# The zero padding that follows an opaque of length n, indexed by n % 4.
_PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")

_uint = struct.Struct(">I").unpack_from
_int = struct.Struct(">i").unpack_from


def scval_b64_to_json(encoded: str) -> Any:
    """Render a base64 ScVal as decode.scval_to_json renders it, or raise UnsupportedScValError."""
    try:
        # Strict base64 only; stellar-sdk skips stray characters, and such text is left to it.
        # Where the strict decoding succeeds it yields the bytes the lenient one does.
        data = binascii.a2b_base64(encoded, strict_mode=True)
    except ValueError as exc:
        raise UnsupportedScValError("not base64") from exc
    try:
        value, end = _read(data, 0, MAX_DEPTH)
    except struct.error as exc:
        raise UnsupportedScValError("truncated") from exc
    if end != len(data):
        raise UnsupportedScValError("trailing bytes")
    return value


def _read(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    (kind,) = _uint(data, pos)
    pos += 4
    if kind == _SYMBOL:
        text, pos = _opaque(data, pos)
        if len(text) > _SYMBOL_LIMIT:
            raise UnsupportedScValError("symbol too long")
        return text.decode("utf-8", "replace"), pos
    if kind == _STRING:
        text, pos = _opaque(data, pos)
        return text.decode("utf-8", "replace"), pos
    if kind == _ADDRESS:
        return _address(data, pos)
    wide = _WIDE_INTEGERS.get(kind)
    if wide is not None:
        width, signed = wide
        end = pos + width
        if end > len(data):
            raise UnsupportedScValError("truncated")
        return str(int.from_bytes(data[pos:end], "big", signed=signed)), end
    if kind == _U32:
        return _uint(data, pos)[0], pos + 4
    if kind == _I32:
        return _int(data, pos)[0], pos + 4
    if kind in (_MAP, _VEC):
        if depth <= 0:
            raise UnsupportedScValError("nested too deep")
        (present,) = _uint(data, pos)
        pos += 4
        if present == 0:
            return ({} if kind == _MAP else []), pos
        if present != 1:
            raise UnsupportedScValError("optional flag is neither 0 nor 1")
        if kind == _MAP:
            return _map(data, pos, depth - 1)
        return _vec(data, pos, depth - 1)
    if kind == _BOOL:
        (flag,) = _uint(data, pos)
        if flag > 1:
            raise UnsupportedScValError("bool is neither 0 nor 1")
        return flag == 1, pos + 4
    if kind == _VOID:
        return None, pos
    if kind == _BYTES:
        raw, pos = _opaque(data, pos)
        return raw.hex(), pos
    raise UnsupportedScValError("ScVal arm not read here")


def _opaque(data: bytes, pos: int) -> tuple[bytes, int]:
    (size,) = _uint(data, pos)
    start = pos + 4
    end = start + size
    padded = end + (-size & 3)
    if padded > len(data):
        raise UnsupportedScValError("truncated")
    # stellar-sdk ignores what the padding holds; canonical XDR has zeros, so anything else
    # is left to it rather than second-guessed here.
    if data[end:padded] != _PADDING[size & 3]:
        raise UnsupportedScValError("non-zero padding")
    return data[start:end], padded


def _address(data: bytes, pos: int) -> tuple[str, int]:
    (kind,) = _uint(data, pos)
    if kind == _CONTRACT:
        start = pos + 4
        render = _contract_strkey
    elif kind == _ACCOUNT and _uint(data, pos + 4)[0] == _ED25519:
        start = pos + 8
        render = _account_strkey
    else:
        raise UnsupportedScValError("address kind not read here")
    end = start + 32
    if end > len(data):
        raise UnsupportedScValError("truncated")
    return render(data[start:end]), end


def _vec(data: bytes, pos: int, depth: int) -> tuple[list[Any], int]:
    (count,) = _uint(data, pos)
    pos += 4
    # Every ScVal takes at least 4 bytes; refuse a count the input cannot hold before looping.
    if count * 4 > len(data) - pos:
        raise UnsupportedScValError("truncated")
    items = []
    for _ in range(count):
        item, pos = _read(data, pos, depth)
        items.append(item)
    return items, pos


def _map(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    (count,) = _uint(data, pos)
    pos += 4
    if count * 8 > len(data) - pos:
        raise UnsupportedScValError("truncated")
    entries = []
    keys_are_text = True
    for _ in range(count):
        key, pos = _read(data, pos, depth)
        value, pos = _read(data, pos, depth)
        entries.append((key, value))
        keys_are_text = keys_are_text and isinstance(key, str)
    # The same choice as decode._map_to_json: an object when every key renders as text
    # (a repeated key keeps its first position and its last value), otherwise pairs.
    if keys_are_text:
        return dict(entries), pos
    return [[key, value] for key, value in entries], pos


# Strkey encoding (base32 plus a CRC16) costs tens of microseconds, and the same accounts
# and contracts appear in event after event.
@lru_cache(maxsize=4096)
def _account_strkey(raw: bytes) -> str:
    return StrKey.encode_ed25519_public_key(raw)


@lru_cache(maxsize=4096)
def _contract_strkey(raw: bytes) -> str:
    return StrKey.encode_contract(raw)
