"""getEvents on the simulated node pages, filters and fails exactly as stellar-rpc does."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from stellar_sdk import scval

from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.simnet.cursor import Cursor, max_cursor
from stellar_reconciler.simnet.testing import result, rpc

Event = dict[str, Any]


def sym(name: str) -> str:
    return scval.to_symbol(name).to_xdr()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def dense() -> Iterator[tuple[SimNetwork, str]]:
    net = SimNetwork(
        SimNetConfig(
            first_ledger=1000, prebuilt_ledgers=300, events_per_ledger=12, system_event_every=7
        )
    )
    with serve_in_thread(net) as url:
        yield net, url


@pytest.fixture(scope="module")
def sparse() -> Iterator[tuple[SimNetwork, str]]:
    # Events only at ledgers 2 and 22002: a 10,000-ledger window in between holds none.
    net = SimNetwork(SimNetConfig(first_ledger=2, prebuilt_ledgers=22_001, event_every=22_000))
    with serve_in_thread(net) as url:
        yield net, url


def follow(
    client: httpx.Client, url: str, params: dict[str, Any], latest: int
) -> tuple[list[Event], int]:
    """Page from `params` until the scanned window reaches `latest`; (events, pages)."""
    page = result(client, url, "getEvents", params)
    events, pages = list(page["events"]), 1
    base = {k: v for k, v in params.items() if k not in ("startLedger", "endLedger", "pagination")}
    limit = params.get("pagination", {}).get("limit")
    while Cursor.parse(page["cursor"]).ledger < latest or len(page["events"]) == (limit or 100):
        pagination: dict[str, Any] = {"cursor": page["cursor"]}
        if limit:
            pagination["limit"] = limit
        page = result(client, url, "getEvents", {**base, "pagination": pagination})
        events += page["events"]
        pages += 1
    return events, pages


def test_paging_over_sparse_events_crosses_empty_pages(
    client: httpx.Client, sparse: tuple[SimNetwork, str]
) -> None:
    """A page with no events is not the end: following cursors reaches events 22,000 ledgers on."""
    net, url = sparse
    first = result(client, url, "getEvents", {"startLedger": 2})
    second = result(client, url, "getEvents", {"pagination": {"cursor": first["cursor"]}})
    assert second["events"] == []
    assert Cursor.parse(second["cursor"]).ledger == 20_000
    events, pages = follow(client, url, {"startLedger": 2}, net.latest_ledger)
    assert events == net.record_events(2, net.latest_ledger)
    assert {e["ledger"] for e in events} == {2, 22_002}
    assert pages == 3


def test_one_call_scans_at_most_10000_ledgers(
    client: httpx.Client, sparse: tuple[SimNetwork, str]
) -> None:
    """The window of one call ends 10,000 ledgers after its start; the cursor says where."""
    _, url = sparse
    page = result(client, url, "getEvents", {"startLedger": 2, "endLedger": 22_003})
    assert page["cursor"] == str(max_cursor(10_001))
    assert {e["ledger"] for e in page["events"]} == {2}


def test_window_stops_at_the_tip(client: httpx.Client, sparse: tuple[SimNetwork, str]) -> None:
    """Near the tip the window ends at latestLedger; resuming there finds nothing new."""
    net, url = sparse
    page = result(client, url, "getEvents", {"startLedger": 21_000})
    assert page["cursor"] == str(max_cursor(net.latest_ledger))
    again = result(client, url, "getEvents", {"pagination": {"cursor": page["cursor"]}})
    assert again["events"] == []
    assert again["cursor"] == page["cursor"]


def test_end_ledger_is_exclusive(client: httpx.Client, dense: tuple[SimNetwork, str]) -> None:
    """endLedger=1003 returns events of 1000-1002 only, and the cursor ends at 1002."""
    net, url = dense
    page = result(
        client,
        url,
        "getEvents",
        {"startLedger": 1000, "endLedger": 1003, "pagination": {"limit": 1000}},
    )
    assert page["events"] == net.record_events(1000, 1002)
    assert page["cursor"] == str(max_cursor(1002))


def test_full_page_cursor_is_the_last_id_and_resumes_after_it(
    client: httpx.Client, dense: tuple[SimNetwork, str]
) -> None:
    """A full page's cursor is its last event id; the next page starts right after it."""
    net, url = dense
    truth = net.record_events(1000, 1010)
    page = result(client, url, "getEvents", {"startLedger": 1000, "pagination": {"limit": 7}})
    assert page["events"] == truth[:7]
    assert page["cursor"] == truth[6]["id"]
    following = result(
        client, url, "getEvents", {"pagination": {"cursor": page["cursor"], "limit": 7}}
    )
    assert following["events"] == truth[7:14]


def test_small_pages_reassemble_the_whole_record(
    client: httpx.Client, dense: tuple[SimNetwork, str]
) -> None:
    """Paging 250 at a time over all ledgers returns every event once, in order."""
    net, url = dense
    events, _ = follow(
        client, url, {"startLedger": 1000, "pagination": {"limit": 250}}, net.latest_ledger
    )
    assert events == net.record_events(1000, net.latest_ledger)


def test_default_limit_is_100(client: httpx.Client, dense: tuple[SimNetwork, str]) -> None:
    """Without a limit a page holds 100 events."""
    _, url = dense
    assert len(result(client, url, "getEvents", {"startLedger": 1000})["events"]) == 100


def test_tip_metadata_accompanies_each_page(
    client: httpx.Client, dense: tuple[SimNetwork, str]
) -> None:
    """Every page reports latest/oldest ledger and their close times (as strings)."""
    net, url = dense
    page = result(client, url, "getEvents", {"startLedger": 1299})
    assert page["latestLedger"] == net.latest_ledger
    assert page["oldestLedger"] == 1000
    assert page["latestLedgerCloseTime"] == str(net.close_time(net.latest_ledger))
    assert page["oldestLedgerCloseTime"] == str(net.close_time(1000))


def filtered(net: SimNetwork, keep: Callable[[Event], bool]) -> list[Event]:
    return [e for e in net.record_events(1000, net.latest_ledger) if keep(e)]


FILTER_CASES: list[
    tuple[str, Callable[[SimNetwork], list[dict[str, Any]]], Callable[[SimNetwork, Event], bool]]
] = [
    (
        "contract id",
        lambda n: [{"contractIds": [n.escrow_contract_id]}],
        lambda n, e: e["contractId"] == n.escrow_contract_id,
    ),
    ("type system", lambda n: [{"type": "system"}], lambda n, e: e["type"] == "system"),
    (
        "exact topic count without **",
        lambda n: [{"topics": [[sym("transfer")]]}],
        lambda n, e: False,
    ),
    (
        "trailing ** matches any length",
        lambda n: [{"topics": [[sym("transfer"), "**"]]}],
        lambda n, e: e["topic"][0] == sym("transfer"),
    ),
    (
        "* matches exactly one topic",
        lambda n: [{"topics": [[sym("fee"), "*"]]}],
        lambda n, e: e["topic"][0] == sym("fee") and len(e["topic"]) == 2,
    ),
    (
        "all wildcards count topics",
        lambda n: [{"topics": [["*", "*", "*", "*"]]}],
        lambda n, e: len(e["topic"]) == 4,
    ),
    (
        "topic filters inside a filter are ORed",
        lambda n: [{"topics": [[sym("mint"), "**"], [sym("job_funded"), "*"]]}],
        lambda n, e: e["topic"][0] in (sym("mint"), sym("job_funded")),
    ),
    (
        "contract and topic are ANDed",
        lambda n: [{"contractIds": [n.native_contract_id], "topics": [[sym("transfer"), "**"]]}],
        lambda n, e: False,
    ),
    (
        "filters are ORed",
        lambda n: [
            {"type": "system"},
            {"contractIds": [n.token_contract_id], "topics": [[sym("mint"), "**"]]},
        ],
        lambda n, e: e["type"] == "system" or e["topic"][0] == sym("mint"),
    ),
    (
        "** alone matches everything",
        lambda n: [{"topics": [["**"]]}],
        lambda n, e: True,
    ),
]


@pytest.mark.parametrize(
    ("name", "make_filters", "keep"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES]
)
def test_filters_select_what_stellar_rpc_selects(
    client: httpx.Client,
    dense: tuple[SimNetwork, str],
    name: str,
    make_filters: Callable[[SimNetwork], list[dict[str, Any]]],
    keep: Callable[[SimNetwork, Event], bool],
) -> None:
    """Each filter combination returns exactly the recorded events it should match."""
    net, url = dense
    params = {"startLedger": 1000, "filters": make_filters(net), "pagination": {"limit": 10_000}}
    page = result(client, url, "getEvents", params)
    assert page["events"] == filtered(net, lambda e: keep(net, e))


def bad(text: str) -> dict[str, Any]:
    return {"startLedger": 1000, "filters": [{"contractIds": [text]}]}


ERROR_CASES: list[tuple[dict[str, Any], int, str]] = [
    ({}, -32602, "startLedger must be positive"),
    (
        {"startLedger": 1000, "pagination": {"cursor": "0004294967296000000-0000000000"}},
        -32602,
        "ledger ranges and cursor cannot both be set",
    ),
    (
        {"endLedger": 1005, "pagination": {"cursor": "0004294967296000000-0000000000"}},
        -32602,
        "ledger ranges and cursor cannot both be set",
    ),
    ({"startLedger": 1000, "pagination": {"limit": 10_001}}, -32602, "limit must not exceed 10000"),
    ({"startLedger": 1000, "filters": [{}] * 6}, -32602, "maximum 5 filters per request"),
    (bad("CBAD"), -32602, "filter 1 invalid: contract ID 1 invalid"),
    (
        {"startLedger": 1000, "filters": [{"contractIds": ["C"] * 6}]},
        -32602,
        "filter 1 invalid: maximum 5 contract IDs per filter",
    ),
    (
        {"startLedger": 1000, "filters": [{"topics": [["*"]] * 6}]},
        -32602,
        "filter 1 invalid: maximum 5 topics per filter",
    ),
    (
        {"startLedger": 1000, "filters": [{"topics": [["*"] * 5]}]},
        -32602,
        "filter 1 invalid: topic 1 invalid: topic cannot have more than 4 segments",
    ),
    ({"startLedger": 1000, "filters": [{"topics": [["*"] * 4 + ["**"]]}]}, 0, ""),
    (
        {"startLedger": 1000, "filters": [{"topics": [["**", "*"]]}]},
        -32602,
        "segment 1 invalid: wildcard '**' is only allowed as the last segment",
    ),
    (
        {"startLedger": 1000, "filters": [{"topics": [[]]}]},
        -32602,
        "topic must have at least 1 segment",
    ),
    (
        {"startLedger": 1000, "filters": [{"type": "diagnostic"}]},
        -32602,
        "filter type invalid: if set, type must be either 'system' or 'contract'",
    ),
    (
        {"startLedger": 1000, "xdrFormat": "xml"},
        -32602,
        "got 'xml': expected base64, json for optional 'xdrFormat'",
    ),
    (
        {"startLedger": "1000"},
        -32602,
        "invalid parameters: json: cannot unmarshal string into Go struct field "
        "GetEventsRequest.startLedger of type uint32",
    ),
    ({"startLedger": -1}, -32602, "cannot unmarshal number -1"),
    ({"pagination": {"cursor": "abc"}}, -32602, "invalid parameters: invalid event id abc"),
    (
        {"pagination": {"cursor": 5}},
        -32602,
        "invalid parameters: json: cannot unmarshal number into Go value of type string",
    ),
    (
        {"startLedger": 1000, "filters": [{"topics": [["not base64!"]]}]},
        -32602,
        "invalid parameters: segment",
    ),
    ({"startLedger": 999}, -32600, "startLedger must be within the ledger range: 1000 - 1299"),
    ({"startLedger": 1300}, -32600, "startLedger must be within the ledger range: 1000 - 1299"),
    ({"pagination": {"cursor": str(max_cursor(1299))}}, 0, ""),
    (
        {"pagination": {"cursor": str(Cursor(1400))}},
        -32600,
        "startLedger must be within the ledger range: 1000 - 1299",
    ),
]


@pytest.mark.parametrize(("params", "code", "message"), ERROR_CASES)
def test_bad_requests_fail_as_the_server_fails(
    client: httpx.Client,
    dense: tuple[SimNetwork, str],
    params: dict[str, Any],
    code: int,
    message: str,
) -> None:
    """Each invalid request answers the server's code and message (code 0: a valid edge case)."""
    _, url = dense
    answer = rpc(client, url, "getEvents", params)
    if code == 0:
        assert "result" in answer, answer
        return
    assert answer["error"]["code"] == code
    assert message in answer["error"]["message"]


def test_retention_window_bounds_the_start(client: httpx.Client) -> None:
    """Below oldestLedger getEvents fails with -32600; closing ledgers moves the window."""
    net = SimNetwork(SimNetConfig(first_ledger=2, prebuilt_ledgers=60, retention_window=50))
    with serve_in_thread(net) as url:
        assert result(client, url, "getEvents", {"startLedger": 12})["oldestLedger"] == 12
        answer = rpc(client, url, "getEvents", {"startLedger": 11})
        assert answer["error"] == {
            "code": -32600,
            "message": "startLedger must be within the ledger range: 12 - 61",
        }
        net.close_ledgers(5)
        assert rpc(client, url, "getEvents", {"startLedger": 12})["error"]["code"] == -32600
        assert result(client, url, "getEvents", {"startLedger": 17})["latestLedger"] == 66
