"""ScVal XDR packing for the hot path of event generation.

Building an ScVal through stellar-sdk's object model costs 6-50 microseconds; a prebuilt
history of a million events would take minutes. The handful of shapes the simulated contracts
emit (i128, u64, u32, vec, map) have fixed XDR layouts (RFC 4506, big-endian), so they are
packed here directly. Everything else (addresses, symbols, strings) is encoded once through
stellar-sdk and reused. tests/unit/test_simnet_codec.py proves each packer byte-identical to
stellar-sdk's encoding.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence

from stellar_sdk import xdr

# SCValType discriminants (Stellar-contract.x).
SCV_U32 = 3
SCV_U64 = 5
SCV_I128 = 10
SCV_STRING = 14
SCV_SYMBOL = 15
SCV_VEC = 16
SCV_MAP = 17

_MASK64 = (1 << 64) - 1
_I128 = struct.Struct(">iqQ")
_U64 = struct.Struct(">iQ")
_U32 = struct.Struct(">iI")
# A vec or map is an optional (present flag 1) array: type, flag, element count.
_SEQ_HEAD = struct.Struct(">iII")


def i128(value: int) -> bytes:
    """XDR of SCVal i128: type, then the high half as int64 and the low half as uint64."""
    if not -(1 << 127) <= value < (1 << 127):
        raise ValueError(f"{value} does not fit in an i128")
    return _I128.pack(SCV_I128, value >> 64, value & _MASK64)


def u64(value: int) -> bytes:
    """XDR of SCVal u64."""
    return _U64.pack(SCV_U64, value)


def u32(value: int) -> bytes:
    """XDR of SCVal u32."""
    return _U32.pack(SCV_U32, value)


def text(kind: int, value: str) -> bytes:
    """XDR of SCVal string or symbol (`kind`): type, length, UTF-8 bytes padded to 4."""
    raw = value.encode()
    return _U32.pack(kind, len(raw)) + raw + b"\0" * (-len(raw) & 3)


def vec(items: Sequence[bytes]) -> bytes:
    """XDR of SCVal vec holding already-encoded ScVals."""
    return _SEQ_HEAD.pack(SCV_VEC, 1, len(items)) + b"".join(items)


def scmap(entries: Sequence[tuple[bytes, bytes]]) -> bytes:
    """XDR of SCVal map; keys must already be in ScVal order (Soroban rejects unsorted maps)."""
    return _SEQ_HEAD.pack(SCV_MAP, 1, len(entries)) + b"".join(k + v for k, v in entries)


def i128_value(data: bytes) -> int | None:
    """The integer inside an i128 ScVal encoding, or None when `data` is another shape."""
    if len(data) != _I128.size:
        return None
    kind, hi, lo = _I128.unpack(data)
    if kind != SCV_I128:
        return None
    value: int = (hi << 64) | lo
    return value


def sdk(value: xdr.SCVal) -> bytes:
    """XDR bytes of an ScVal built with stellar-sdk (for the pieces encoded once)."""
    encoded: bytes = value.to_xdr_bytes()
    return encoded


def canonical(text: str) -> str:
    """Re-encode a base64 ScVal so equal ScVals give equal strings; ValueError if invalid."""
    try:
        value = xdr.SCVal.from_xdr(text)
    except (ValueError, TypeError, IndexError, KeyError, EOFError) as exc:
        # stellar-sdk reports bad base64, short input and unknown discriminants differently.
        detail = str(exc) or type(exc).__name__
        raise ValueError(f"not a base64 XDR ScVal: {detail}") from None
    encoded: str = value.to_xdr()
    return encoded


def b64(data: bytes) -> str:
    """Standard base64, as Stellar RPC sends XDR."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Decode standard base64, refusing characters outside the alphabet."""
    return base64.b64decode(text, validate=True)
