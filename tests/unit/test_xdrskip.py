"""Skippers compiled from stellar-sdk's layouts find the exact end of real XDR values."""

from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stellar_sdk import Address, scval, xdr

from stellar_reconciler.errors import XdrSkipError
from stellar_reconciler.xdrskip import skipper
from tests.fixtures import load


def _corpus() -> list[tuple[str, bytes]]:
    values = []
    for record in load("mainnet_getTransactions_corpus.json")["records"]:
        values.append(("TransactionEnvelope", base64.b64decode(record["envelopeXdr"])))
        values.append(("TransactionResult", base64.b64decode(record["resultXdr"])))
        values.append(("TransactionMeta", base64.b64decode(record["resultMetaXdr"])))
    for record in load("mainnet_getLedgers_headers_63800060-63800109.json")["records"]:
        values.append(("LedgerHeaderHistoryEntry", base64.b64decode(record["headerXdr"])))
    for ledger in load("testnet_getLedgers_36233-36234.result.json")["ledgers"]:
        values.append(("LedgerCloseMeta", base64.b64decode(ledger["metadataXdr"])))
    latest = load("testnet_getLatestLedger_1283415_p25.result.json")
    values.append(("LedgerCloseMeta", base64.b64decode(latest["metadataXdr"])))
    values.append(("LedgerHeader", base64.b64decode(latest["headerXdr"])))
    return values


def test_every_real_value_skips_to_its_exact_length() -> None:
    """Envelopes, results, v4 metas, headers and close metas (v1, v2) of real networks: the
    skipper's end is the value's length, as stellar-sdk's decode of the same type consumes."""
    for name, data in _corpus():
        end = skipper(name)(data, 0)
        assert end == len(data), name
        assert len(getattr(xdr, name).from_xdr_bytes(data).to_xdr_bytes()) == end


def test_skipping_inside_a_buffer_starts_at_the_position_given() -> None:
    """A value in the middle of a buffer ends where it ends, whatever follows it."""
    name, data = _corpus()[2]
    padded = b"\x01" * 12 + data + b"\x02" * 8
    assert skipper(name)(padded, 12) == 12 + len(data)


def test_unknown_union_arm_and_short_input_raise() -> None:
    """A discriminant no arm has is XdrSkipError; input that ends early is struct.error or an
    end past the input, never a silent short value."""
    with pytest.raises(XdrSkipError, match="unknown arm"):
        skipper("LedgerCloseMeta")(struct.pack(">i", 9) + b"\0" * 64, 0)
    name, data = _corpus()[2]
    for cut in (3, len(data) // 2, len(data) - 1):
        try:
            end = skipper(name)(data[:cut], 0)
        except (struct.error, XdrSkipError):
            continue
        assert end > cut


_scalars = st.one_of(
    st.booleans().map(scval.to_bool),
    st.just(scval.to_void()),
    st.integers(0, 2**32 - 1).map(scval.to_uint32),
    st.integers(-(2**63), 2**63 - 1).map(scval.to_int64),
    st.integers(-(2**127), 2**127 - 1).map(scval.to_int128),
    st.integers(0, 2**256 - 1).map(scval.to_uint256),
    st.binary(max_size=40).map(scval.to_bytes),
    st.binary(max_size=33).map(scval.to_string),
    st.from_regex(r"[a-z_]{1,32}", fullmatch=True).map(scval.to_symbol),
    st.binary(min_size=32, max_size=32).map(
        lambda raw: scval.to_address(Address.from_raw_contract(raw))
    ),
    st.integers(0, 2**32 - 1).map(
        lambda code: xdr.SCVal(
            xdr.SCValType.SCV_ERROR,
            error=xdr.SCError(xdr.SCErrorType.SCE_CONTRACT, contract_code=xdr.Uint32(code)),
        )
    ),
)
_scvals = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(scval.to_vec),
        st.lists(st.tuples(children, children), max_size=4).map(
            lambda pairs: xdr.SCVal(
                xdr.SCValType.SCV_MAP,
                map=xdr.SCMap([xdr.SCMapEntry(key=k, val=v) for k, v in pairs]),
            )
        ),
    ),
    max_leaves=25,
)


@settings(max_examples=300)
@given(_scvals, st.binary(max_size=8))
def test_scval_skipper_finds_the_end_stellar_sdk_encodes(value: xdr.SCVal, tail: bytes) -> None:
    """Any ScVal (nested vectors and maps, errors, addresses, wide integers), followed by any
    bytes: the skipper ends exactly where stellar-sdk's encoding of the value ends."""
    encoded = value.to_xdr_bytes()
    assert skipper("SCVal")(encoded + tail, 0) == len(encoded)
