"""The simulated node's answers match the OpenRPC result schemas and real recorded answers."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from stellar_sdk import xdr

from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.simnet.testing import (
    load_fixture,
    result,
    result_schema,
    schema_problems,
    shape_problems,
)


@pytest.fixture(scope="module")
def net() -> SimNetwork:
    return SimNetwork(SimNetConfig(first_ledger=1000, prebuilt_ledgers=120, events_per_ledger=6))


@pytest.fixture(scope="module")
def url(net: SimNetwork) -> Iterator[str]:
    with serve_in_thread(net) as base:
        yield base


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


def call(client: httpx.Client, url: str, method: str, params: Any = None) -> Any:
    answer = result(client, url, method, params)
    assert schema_problems(answer, result_schema(method)) == []
    return answer


def test_get_health_matches_its_schema(client: httpx.Client, url: str, net: SimNetwork) -> None:
    """getHealth reports the tip and window, close times as strings."""
    health = call(client, url, "getHealth")
    assert health == {
        "status": "healthy",
        "latestLedger": net.latest_ledger,
        "latestLedgerCloseTime": str(net.close_time(net.latest_ledger)),
        "oldestLedger": 1000,
        "oldestLedgerCloseTime": str(net.close_time(1000)),
        "ledgerRetentionWindow": 120_960,
    }


def test_get_network_names_the_simulated_network(client: httpx.Client, url: str) -> None:
    """getNetwork gives a standalone-style passphrase and the protocol version."""
    network = call(client, url, "getNetwork")
    assert network == {
        "passphrase": "Stellar Reconciler Simulated Network ; 2026",
        "protocolVersion": 23,
    }


def test_get_latest_ledger_has_a_bare_header(
    client: httpx.Client, url: str, net: SimNetwork
) -> None:
    """getLatestLedger's headerXdr is a bare LedgerHeader whose sha256 is `id`."""
    latest = call(client, url, "getLatestLedger")
    recorded = load_fixture("testnet_getLatestLedger_1283415_p25.result.json")
    assert shape_problems(latest, recorded) == []
    header_bytes = xdr.LedgerHeader.from_xdr(latest["headerXdr"]).to_xdr_bytes()
    assert (
        hashlib.sha256(header_bytes).hexdigest()
        == latest["id"]
        == net.ledger_hash(net.latest_ledger)
    )
    meta = xdr.LedgerCloseMeta.from_xdr(latest["metadataXdr"])
    assert meta.v1.ledger_header.header.ledger_seq.uint32 == latest["sequence"]


def test_get_ledgers_matches_the_recorded_shape(client: httpx.Client, url: str) -> None:
    """getLedgers has the recorded keys and types (ledgerCloseTime a string, latest... a number)."""
    page = call(client, url, "getLedgers", {"startLedger": 1010, "pagination": {"limit": 2}})
    recorded = load_fixture("testnet_getLedgers_36233-36234.result.json")
    assert shape_problems(page, recorded) == []
    assert isinstance(page["ledgers"][0]["ledgerCloseTime"], str)
    assert isinstance(page["latestLedgerCloseTime"], int)
    assert page["cursor"] == "1011"


def test_get_ledgers_headers_recompute_and_chain(client: httpx.Client, url: str) -> None:
    """Each headerXdr is a LedgerHeaderHistoryEntry: sha256(header) == hash, and hashes chain."""
    page = call(client, url, "getLedgers", {"startLedger": 1000, "pagination": {"limit": 120}})
    previous: str | None = None
    for ledger in page["ledgers"]:
        entry = xdr.LedgerHeaderHistoryEntry.from_xdr(ledger["headerXdr"])
        assert hashlib.sha256(entry.header.to_xdr_bytes()).hexdigest() == ledger["hash"]
        assert entry.hash.hash.hex() == ledger["hash"]
        assert entry.header.ledger_seq.uint32 == ledger["sequence"]
        assert str(entry.header.scp_value.close_time.time_point.uint64) == ledger["ledgerCloseTime"]
        if previous is not None:
            assert entry.header.previous_ledger_hash.hash.hex() == previous
        previous = ledger["hash"]
        meta = xdr.LedgerCloseMeta.from_xdr(ledger["metadataXdr"])
        assert meta.v1.ledger_header.hash.hash.hex() == ledger["hash"]


def test_get_events_matches_the_recorded_shape(
    client: httpx.Client, url: str, net: SimNetwork
) -> None:
    """getEvents has the recorded keys and types, and serves exactly the record."""
    page = call(client, url, "getEvents", {"startLedger": 1000, "endLedger": 1004})
    recorded = load_fixture("testnet_getEvents_native_transfers.result.json")
    assert shape_problems(page, recorded) == []
    assert page["events"] == net.record_events(1000, 1003)
    assert isinstance(page["latestLedgerCloseTime"], str)


def test_json_format_events_carry_topic_json(
    client: httpx.Client, url: str, net: SimNetwork
) -> None:
    """xdrFormat json swaps topic/value for topicJson/valueJson rendered from the same ScVals."""
    params = {"startLedger": 1000, "endLedger": 1002, "xdrFormat": "json"}
    page = call(client, url, "getEvents", params)
    truth = net.record_events(1000, 1001)
    assert len(page["events"]) == len(truth)
    for event, true in zip(page["events"], truth, strict=True):
        assert "topic" not in event
        assert "value" not in event
        assert event["id"] == true["id"]
        first_topic = xdr.SCVal.from_xdr(true["topic"][0]).sym.sc_symbol.decode()
        assert event["topicJson"][0] == {"symbol": first_topic}
        assert len(event["topicJson"]) == len(true["topic"])
        assert isinstance(event["valueJson"], dict)


def test_json_format_ledgers_carry_header_json(client: httpx.Client, url: str) -> None:
    """getLedgers with xdrFormat json sends headerJson/metadataJson and empty XDR strings."""
    params = {"startLedger": 1001, "pagination": {"limit": 1}, "xdrFormat": "json"}
    (ledger,) = call(client, url, "getLedgers", params)["ledgers"]
    assert ledger["headerXdr"] == ""
    assert ledger["metadataXdr"] == ""
    assert ledger["headerJson"]["hash"] == ledger["hash"]
    assert ledger["headerJson"]["header"]["ledger_seq"] == 1001
    assert "v1" in ledger["metadataJson"]
