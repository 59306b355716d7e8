"""getLedgers on the simulated node pages by cursor and fails exactly as stellar-rpc does."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from stellar_sdk import xdr

from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.simnet.testing import result, rpc


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[SimNetwork, str]]:
    net = SimNetwork(SimNetConfig(first_ledger=100, prebuilt_ledgers=130, retention_window=120))
    with serve_in_thread(net) as url:
        yield net, url


def test_cursor_paging_walks_the_whole_chain(
    client: httpx.Client, served: tuple[SimNetwork, str]
) -> None:
    """Following cursors from oldestLedger yields every ledger once, chained, up to the tip."""
    net, url = served
    page = result(client, url, "getLedgers", {"startLedger": net.oldest_ledger})
    ledgers = list(page["ledgers"])
    assert len(ledgers) == 50
    while int(page["cursor"]) < page["latestLedger"]:
        page = result(client, url, "getLedgers", {"pagination": {"cursor": page["cursor"]}})
        ledgers += page["ledgers"]
    record = net.record_ledgers(net.oldest_ledger, net.latest_ledger)
    assert [(x["sequence"], x["hash"]) for x in ledgers] == [
        (r["sequence"], r["hash"]) for r in record
    ]
    for before, after in itertools.pairwise(ledgers):
        header = xdr.LedgerHeaderHistoryEntry.from_xdr(after["headerXdr"]).header
        assert header.previous_ledger_hash.hash.hex() == before["hash"]
        assert hashlib.sha256(header.to_xdr_bytes()).hexdigest() == after["hash"]


def test_page_at_the_tip_is_short_and_ends_at_latest(
    client: httpx.Client, served: tuple[SimNetwork, str]
) -> None:
    """A page starting near the tip holds what exists; its cursor is latestLedger."""
    net, url = served
    page = result(
        client,
        url,
        "getLedgers",
        {"startLedger": net.latest_ledger - 1, "pagination": {"limit": 200}},
    )
    assert [x["sequence"] for x in page["ledgers"]] == [net.latest_ledger - 1, net.latest_ledger]
    assert page["cursor"] == str(net.latest_ledger)


def test_tip_fields_have_numeric_close_times(
    client: httpx.Client, served: tuple[SimNetwork, str]
) -> None:
    """latest/oldest ledger and their close times (numbers here) accompany each page."""
    net, url = served
    page = result(
        client, url, "getLedgers", {"startLedger": net.oldest_ledger, "pagination": {"limit": 1}}
    )
    assert page["latestLedger"] == net.latest_ledger
    assert page["oldestLedger"] == net.oldest_ledger == 110
    assert page["latestLedgerCloseTime"] == net.close_time(net.latest_ledger)
    assert page["oldestLedgerCloseTime"] == net.close_time(110)


def test_paginated_start_past_the_tip_is_an_empty_page(
    client: httpx.Client, served: tuple[SimNetwork, str]
) -> None:
    """With pagination set, a start past the tip is not checked: no ledgers, cursor start - 1."""
    net, url = served
    start = net.latest_ledger + 5
    page = result(client, url, "getLedgers", {"startLedger": start, "pagination": {"limit": 5}})
    assert page["ledgers"] == []
    assert page["cursor"] == str(start - 1)


ERROR_CASES: list[tuple[dict[str, Any], int, str]] = [
    (
        {"startLedger": 120, "pagination": {"cursor": "119"}},
        -32600,
        "startLedger and cursor cannot both be set",
    ),
    ({"startLedger": 120, "pagination": {"limit": 201}}, -32600, "limit must not exceed 200"),
    (
        {"startLedger": 109},
        -32600,
        "start ledger must be between the oldest ledger: 110 and the latest ledger: 229 "
        "for this rpc instance",
    ),
    (
        {"startLedger": 230},
        -32600,
        "start ledger must be between the oldest ledger: 110 and the latest ledger: 229",
    ),
    (
        {"startLedger": 120, "xdrFormat": "yaml"},
        -32600,
        "got 'yaml': expected base64, json for optional 'xdrFormat'",
    ),
    (
        {"pagination": {"cursor": "229"}},
        -32602,
        "cursor ('229') must be between the oldest ledger: 110 and the latest ledger: 229 "
        "for this rpc instance",
    ),
    ({"pagination": {"cursor": "100"}}, -32602, "cursor ('100') must be between"),
    ({"pagination": {"cursor": "abc"}}, -32602, 'strconv.ParseUint: parsing "abc": invalid syntax'),
    (
        {"startLedger": 105, "pagination": {"limit": 10}},
        -32602,
        "datastore ledger reader not configured",
    ),
    ({}, -32602, "datastore ledger reader not configured"),
    (
        {"startLedger": "120"},
        -32602,
        "invalid parameters: json: cannot unmarshal string into Go struct field "
        "GetLedgersRequest.startLedger of type uint32",
    ),
    (
        {"startLedger": 120, "pagination": {"limit": -1}},
        -32602,
        "cannot unmarshal number -1 into Go struct field "
        "GetLedgersRequest.pagination.limit of type uint",
    ),
]


@pytest.mark.parametrize(("params", "code", "message"), ERROR_CASES)
def test_bad_requests_fail_as_the_server_fails(
    client: httpx.Client,
    served: tuple[SimNetwork, str],
    params: dict[str, Any],
    code: int,
    message: str,
) -> None:
    """Each invalid getLedgers request answers the server's code and message."""
    _, url = served
    answer = rpc(client, url, "getLedgers", params)
    assert answer["error"]["code"] == code, answer
    assert message in answer["error"]["message"]
