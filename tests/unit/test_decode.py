"""decode.py against the recorded real responses and hand-built ScVals."""

from __future__ import annotations

import base64
import hashlib

import pytest
from stellar_sdk import Keypair, scval, xdr

from stellar_reconciler.decode import (
    DecodeError,
    decode_bare_header,
    decode_event,
    decode_history_entry,
    decode_scval_b64,
    parse_event_id,
    scval_to_json,
)
from stellar_reconciler.rpc import parse_event
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
