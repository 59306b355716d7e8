"""decode.py against the recorded real responses and hand-built ScVals."""

from __future__ import annotations

import base64
import hashlib
import string
import struct
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stellar_sdk import Address, Keypair, MuxedAccount, scval, xdr

from stellar_reconciler.decode import (
    decode_bare_header,
    decode_event,
    decode_history_entry,
    decode_scval_b64,
    parse_event_id,
    scval_to_json,
)
from stellar_reconciler.errors import DecodeError, UnsupportedScValError
from stellar_reconciler.rpc import parse_event
from stellar_reconciler.scval import MAX_DEPTH, scval_b64_to_json
from tests.fixtures import load

SAC = "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC"


def test_native_transfer_fixture_decodes_to_documented_values() -> None:
    """The recorded SAC transfer decodes to symbol transfer, G and C addresses, 'native', i128."""
    result = load("testnet_getEvents_native_transfers.result.json")
    event = decode_event(parse_event(result["events"][0]))
    assert event.name == "transfer"
    assert event.topics[0] == "transfer"
    assert event.topics[1].startswith("G") and len(event.topics[1]) == 56
    assert event.topics[2].startswith("C") and len(event.topics[2]) == 56
    assert event.topics[3] == "native"
    assert event.value == "3000000000"
    assert event.contract_id == SAC
    assert event.ledger == 3727845
    assert event.ledger_closed_at.isoformat() == "2026-07-21T18:01:10+00:00"


def test_second_transfer_in_fixture_is_contract_to_contract() -> None:
    """The second recorded transfer moves between two contracts, amount 42558863 stroops."""
    result = load("testnet_getEvents_native_transfers.result.json")
    event = decode_event(parse_event(result["events"][1]))
    assert event.topics[1].startswith("C") and event.topics[2].startswith("C")
    assert event.value == str(0x0289658F)


@pytest.mark.parametrize(
    "name", ["testnet_getEvents_any.result.json", "testnet_getEvents_fee_events.result.json"]
)
def test_fee_event_fixtures_decode(name: str) -> None:
    """Tx-level fee events decode to symbol fee, an account, and an i128 amount."""
    for raw in load(name)["events"]:
        event = decode_event(parse_event(raw))
        assert event.name == "fee"
        assert event.topics[1].startswith("G")
        assert int(event.value) > 0


def test_event_id_decodes_to_ledger_tx_op_index() -> None:
    """0016010972359577600-0000000001 is ledger 3727845, tx 5, op 0, event 1 (SOURCES.md)."""
    assert parse_event_id("0016010972359577600-0000000001") == (3727845, 5, 0, 1)


def test_fee_events_share_a_toid_with_distinct_indexes() -> None:
    """In the 'any' fixture two fee events of different txs share TOID ...616, indexes 0 and 1."""
    events = load("testnet_getEvents_any.result.json")["events"]
    ids = [parse_event_id(e["id"]) for e in events]
    assert ids[0][:3] == ids[1][:3] == (3729796, 0, 0)
    assert [i[3] for i in ids] == [0, 1]
    assert events[0]["txHash"] != events[1]["txHash"]


@pytest.mark.parametrize("bad", ["", "123", "abc-0000000001", "0016010972359577600-x"])
def test_bad_event_ids_are_rejected(bad: str) -> None:
    """An id that is not TOID-INDEX raises DecodeError, never a wrong ledger."""
    with pytest.raises(DecodeError):
        parse_event_id(bad)


def test_testnet_ledger_headers_recompute_and_chain() -> None:
    """Both recorded testnet ledgers hash to their served hash and 36234 links to 36233."""
    result = load("testnet_getLedgers_36233-36234.result.json")
    headers = []
    for ledger in result["ledgers"]:
        header, claimed = decode_history_entry(ledger["headerXdr"])
        assert header.hash == claimed == ledger["hash"]
        assert header.sequence == ledger["sequence"]
        assert str(header.close_time) == ledger["ledgerCloseTime"]
        headers.append(header)
    assert headers[1].previous_hash == headers[0].hash
    assert headers[1].previous_hash == (
        "434de11b427aa4b6f8cda259ac2111a6aa148d2ab6b4c7affe864e94a9f4bd80"
    )


def test_fifty_mainnet_headers_chain_and_are_464_bytes() -> None:
    """All 50 recorded mainnet entries are 464 bytes, re-hash, and chain through previous hash."""
    records = load("mainnet_getLedgers_headers_63800060-63800109.json")["records"]
    assert len(records) == 50
    previous = None
    gaps = []
    for record in records:
        assert len(base64.b64decode(record["headerXdr"])) == 464
        header, claimed = decode_history_entry(record["headerXdr"])
        assert header.hash == claimed
        assert header.sequence == record["sequence"]
        if previous is not None:
            assert header.previous_hash == previous.hash
            gaps.append(header.close_time - previous.close_time)
        previous = header
    assert min(gaps) == 5 and max(gaps) == 7
    assert round(sum(gaps) / len(gaps), 2) == 5.59


def test_latest_ledger_header_is_a_bare_ledger_header() -> None:
    """getLatestLedger's headerXdr is a LedgerHeader whose sha256 is the served id."""
    result = load("testnet_getLatestLedger_1283415_p25.result.json")
    header = decode_bare_header(result["headerXdr"])
    assert header.hash == result["id"]
    assert header.sequence == 1283415
    assert header.protocol_version == 25
    with pytest.raises(DecodeError):
        decode_history_entry(result["headerXdr"])


def test_standalone_ledgers_chain() -> None:
    """The recorded standalone ledgers 10 and 11 chain as well."""
    result = load("standalone_getLedgers_10-11.result.json")
    first, _ = decode_history_entry(result["ledgers"][0]["headerXdr"])
    second, _ = decode_history_entry(result["ledgers"][1]["headerXdr"])
    assert second.previous_hash == first.hash == result["ledgers"][0]["hash"]


def test_scval_rendering_of_every_common_type() -> None:
    """Symbols, strings, numbers, bytes, vectors and maps render as documented."""
    account = Keypair.random().public_key
    value = scval.to_map(
        {
            scval.to_symbol("amount"): scval.to_int128(-(2**100)),
            scval.to_symbol("big"): scval.to_uint64(2**63),
            scval.to_symbol("small"): scval.to_uint32(7),
            scval.to_symbol("who"): scval.to_address(account),
            scval.to_symbol("tags"): scval.to_vec([scval.to_string("a"), scval.to_bool(True)]),
            scval.to_symbol("raw"): scval.to_bytes(b"\x01\xff"),
            scval.to_symbol("none"): scval.to_void(),
        }
    )
    assert scval_to_json(value) == {
        "amount": str(-(2**100)),
        "big": str(2**63),
        "small": 7,
        "who": account,
        "tags": ["a", True],
        "raw": "01ff",
        "none": None,
    }


def test_map_with_non_string_keys_becomes_pairs() -> None:
    """A map keyed by numbers cannot be a JSON object, so it becomes [key, value] pairs."""
    value = scval.to_map({scval.to_uint32(1): scval.to_symbol("one")})
    assert scval_to_json(value) == [[1, "one"]]


def test_malformed_scval_raises_decode_error() -> None:
    """Bytes that are not an ScVal raise DecodeError (the RPC answer is malformed)."""
    with pytest.raises(DecodeError):
        decode_scval_b64(base64.b64encode(b"\xff\xff\xff\xff").decode())


def test_header_hash_is_sha256_of_header_xdr() -> None:
    """The recomputed hash is exactly sha256 over the LedgerHeader's XDR bytes."""
    record = load("mainnet_getLedgers_headers_63800060-63800109.json")["records"][0]
    entry = xdr.LedgerHeaderHistoryEntry.from_xdr(record["headerXdr"])
    header, _ = decode_history_entry(record["headerXdr"])
    assert header.hash == hashlib.sha256(entry.header.to_xdr_bytes()).hexdigest()


def _ints(
    to_scval: Callable[[int], xdr.SCVal], low: int, high: int
) -> st.SearchStrategy[xdr.SCVal]:
    return st.one_of(st.sampled_from([low, high, 0]), st.integers(low, high)).map(to_scval)


_raw_keys = st.binary(min_size=32, max_size=32)
_symbols = st.text(string.ascii_letters + string.digits + "_", max_size=32).map(scval.to_symbol)
_scalars = st.one_of(
    st.booleans().map(scval.to_bool),
    st.just(scval.to_void()),
    _ints(scval.to_uint32, 0, 2**32 - 1),
    _ints(scval.to_int32, -(2**31), 2**31 - 1),
    _ints(scval.to_uint64, 0, 2**64 - 1),
    _ints(scval.to_int64, -(2**63), 2**63 - 1),
    _ints(scval.to_timepoint, 0, 2**64 - 1),
    _ints(scval.to_duration, 0, 2**64 - 1),
    _ints(scval.to_uint128, 0, 2**128 - 1),
    _ints(scval.to_int128, -(2**127), 2**127 - 1),
    _ints(scval.to_uint256, 0, 2**256 - 1),
    _ints(scval.to_int256, -(2**255), 2**255 - 1),
    st.binary(max_size=40).map(scval.to_bytes),
    st.text(max_size=20).map(scval.to_string),
    # Strings need not be UTF-8; both paths render such bytes with replacement characters.
    st.binary(max_size=20).map(scval.to_string),
    _symbols,
    _raw_keys.map(lambda raw: scval.to_address(Address.from_raw_account(raw))),
    _raw_keys.map(lambda raw: scval.to_address(Address.from_raw_contract(raw))),
)


def _entries_in_given_order(pairs: list[tuple[xdr.SCVal, xdr.SCVal]]) -> xdr.SCVal:
    entries = [xdr.SCMapEntry(key=key, val=val) for key, val in pairs]
    return xdr.SCVal(xdr.SCValType.SCV_MAP, map=xdr.SCMap(sc_map=entries))


def _containers(children: st.SearchStrategy[xdr.SCVal]) -> st.SearchStrategy[xdr.SCVal]:
    return st.one_of(
        st.lists(children, max_size=5).map(scval.to_vec),
        st.dictionaries(_symbols, children, max_size=5).map(scval.to_map),
        # Hashable (scalar) keys of any kind, sorted the Soroban way by to_map.
        st.dictionaries(_scalars, children, max_size=5).map(scval.to_map),
        # Vector and map keys, unsorted and repeated: shapes to_map cannot build.
        st.lists(st.tuples(children, children), max_size=5).map(_entries_in_given_order),
        st.just(xdr.SCVal(xdr.SCValType.SCV_VEC)),
        st.just(xdr.SCVal(xdr.SCValType.SCV_MAP)),
    )


_scvals = st.recursive(_scalars, _containers, max_leaves=20)


@given(_scvals)
def test_fast_reader_renders_every_supported_shape_as_stellar_sdk_does(value: xdr.SCVal) -> None:
    """The direct reader handles every event ScVal shape and renders it as stellar-sdk does."""
    encoded = value.to_xdr()
    fast = scval_b64_to_json(encoded)  # raises UnsupportedScValError if it stood aside
    reference = scval_to_json(xdr.SCVal.from_xdr(encoded))
    # repr also tells True from 1 and sees dict order, which == does not.
    assert repr(fast) == repr(reference)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _words(*words: int) -> bytes:
    return struct.pack(f">{len(words)}I", *words)


_ESCROW = scval.to_map(
    {
        scval.to_symbol("budget"): scval.to_int128(-(2**100)),
        scval.to_symbol("client"): scval.to_address(Address.from_raw_account(bytes(range(32)))),
        scval.to_symbol("tags"): scval.to_vec([scval.to_string("milestone"), scval.to_bytes(b"x")]),
    }
).to_xdr_bytes()
_SYMBOL = xdr.SCValType.SCV_SYMBOL.value
_BOOL = xdr.SCValType.SCV_BOOL.value
_VEC = xdr.SCValType.SCV_VEC.value
_U32 = xdr.SCValType.SCV_U32.value


def _nested_vecs(depth: int) -> bytes:
    data = _words(_U32, 7)
    for _ in range(depth):
        data = _words(_VEC, 1, 1) + data
    return data


# Shapes the reader leaves to stellar-sdk that stellar-sdk still renders.
_RENDERED_BY_SDK = {
    "error": xdr.SCVal(
        xdr.SCValType.SCV_ERROR,
        error=xdr.SCError(xdr.SCErrorType.SCE_CONTRACT, contract_code=xdr.Uint32(7)),
    ).to_xdr(),
    "nonce key": xdr.SCVal(
        xdr.SCValType.SCV_LEDGER_KEY_NONCE, nonce_key=xdr.SCNonceKey(xdr.Int64(5))
    ).to_xdr(),
    "unsupported arm inside a vec": scval.to_vec(
        [scval.to_uint32(1), xdr.SCVal(xdr.SCValType.SCV_LEDGER_KEY_CONTRACT_INSTANCE)]
    ).to_xdr(),
    "muxed address": scval.to_address(
        MuxedAccount(Keypair.from_raw_ed25519_public_key(bytes(32)).public_key, 42).account_muxed
    ).to_xdr(),
    "non-zero padding": _b64(_words(_SYMBOL, 3) + b"abc\x01"),
    "bool of 2": _b64(_words(_BOOL, 2)),
    "optional flag of 2": _b64(_words(_VEC, 2, 1, _U32, 9)),
    "deeper than MAX_DEPTH": _b64(_nested_vecs(MAX_DEPTH + 1)),
    "base64 with junk between": "AAAAAwAA AAc=\n",
}

# Input stellar-sdk rejects: the reader stands aside so the DecodeError stays the same.
_REJECTED_BY_SDK = {
    **{f"truncated to {n} bytes": _b64(_ESCROW[:n]) for n in range(0, len(_ESCROW), 5)},
    "trailing bytes": _b64(_ESCROW + bytes(4)),
    "symbol of 33 letters": _b64(_words(_SYMBOL, 33) + b"a" * 33 + bytes(3)),
    "vec count beyond input": _b64(_words(_VEC, 1, 1000, _U32, 1)),
    "unknown arm": _b64(_words(99)),
    "not base64": "A",
    "not ascii": "AAAAAwAAAAc\u00e9",
}


@pytest.mark.parametrize("encoded", _RENDERED_BY_SDK.values(), ids=_RENDERED_BY_SDK.keys())
def test_fast_reader_leaves_rare_shapes_to_stellar_sdk(encoded: str) -> None:
    """Rare arms and non-canonical bytes go the stellar-sdk way and render as they always did."""
    with pytest.raises(UnsupportedScValError):
        scval_b64_to_json(encoded)
    expected = scval_to_json(xdr.SCVal.from_xdr(encoded))
    assert repr(decode_scval_b64(encoded)) == repr(expected)


@pytest.mark.parametrize("encoded", _REJECTED_BY_SDK.values(), ids=_REJECTED_BY_SDK.keys())
def test_fast_reader_leaves_malformed_input_to_stellar_sdk(encoded: str) -> None:
    """Truncated, overlong or undecodable input still raises the same DecodeError as before."""
    with pytest.raises(UnsupportedScValError):
        scval_b64_to_json(encoded)
    with pytest.raises(DecodeError, match="not a base64 ScVal"):
        decode_scval_b64(encoded)


def test_fast_reader_follows_nesting_up_to_max_depth() -> None:
    """MAX_DEPTH nested vectors are still read directly, and match stellar-sdk."""
    encoded = _b64(_nested_vecs(MAX_DEPTH))
    assert scval_b64_to_json(encoded) == scval_to_json(xdr.SCVal.from_xdr(encoded))


def test_bad_ledger_close_time_raises_decode_error_every_time() -> None:
    """An unparsable ledgerClosedAt raises DecodeError naming it, also when seen again."""
    raw = dict(load("testnet_getEvents_native_transfers.result.json")["events"][0])
    raw["ledgerClosedAt"] = "yesterday"
    for _ in range(2):
        with pytest.raises(DecodeError, match="ledgerClosedAt 'yesterday'"):
            decode_event(parse_event(raw))
