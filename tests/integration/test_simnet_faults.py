"""Scripted faults reach the client over real HTTP, and counters show every attempt."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from stellar_reconciler.simnet import (
    FaultKind,
    SimNetConfig,
    SimNetwork,
    ledgers_page_covers,
    serve_in_thread,
)
from stellar_reconciler.simnet.testing import result, rpc

HEALTH = {"jsonrpc": "2.0", "id": 7, "method": "getHealth"}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[SimNetwork, str]]:
    net = SimNetwork(SimNetConfig(first_ledger=2, prebuilt_ledgers=40))
    with serve_in_thread(net) as url:
        yield net, url


@pytest.fixture
def net(served: tuple[SimNetwork, str]) -> Iterator[SimNetwork]:
    network = served[0]
    network.faults.clear()
    network.reset_requests()
    yield network
    network.faults.clear()


@pytest.fixture
def url(served: tuple[SimNetwork, str]) -> str:
    return served[1]


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


@pytest.mark.parametrize(
    ("kind", "status", "body"),
    [
        (FaultKind.HTTP_500, 500, b""),
        (FaultKind.HTTP_503, 503, b""),
        (FaultKind.HTTP_504, 504, b""),
    ],
)
def test_overload_statuses_have_empty_bodies(
    net: SimNetwork, url: str, client: httpx.Client, kind: FaultKind, status: int, body: bytes
) -> None:
    """500, 503 and 504 arrive with an empty body, as stellar-rpc's limiters send them."""
    net.faults.add(kind)
    response = client.post(url, json=HEALTH)
    assert (response.status_code, response.content) == (status, body)
    assert client.post(url, json=HEALTH).status_code == 200


def test_bad_gateway_is_an_html_page(net: SimNetwork, url: str, client: httpx.Client) -> None:
    """502 comes from a proxy: an HTML body."""
    net.faults.add(FaultKind.HTTP_502)
    response = client.post(url, json=HEALTH)
    assert response.status_code == 502
    assert response.headers["content-type"] == "text/html"
    assert b"Bad Gateway" in response.content


def test_rate_limit_carries_retry_after(net: SimNetwork, url: str, client: httpx.Client) -> None:
    """429 carries Retry-After when the rule sets it."""
    net.faults.add(FaultKind.HTTP_429, retry_after=3)
    net.faults.add(FaultKind.HTTP_429)
    first = client.post(url, json=HEALTH)
    assert (first.status_code, first.headers["retry-after"]) == (429, "3")
    second = client.post(url, json=HEALTH)
    assert second.status_code == 429
    assert "retry-after" not in second.headers


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (-32603, None, "latency (45s) since last known ledger closed is too high (>30s)"),
        (-32001, None, "request exceeded processing limit threshold"),
        (-32098, None, "rpc queue for getHealth surpassed queue limit of 10 requests"),
        (-32000, "anything at all", "anything at all"),
    ],
)
def test_json_rpc_errors_keep_the_request_id(
    net: SimNetwork, url: str, client: httpx.Client, code: int, message: str | None, expected: str
) -> None:
    """JSON-RPC error faults answer HTTP 200 with the code, message and the caller's id."""
    net.faults.add(FaultKind.RPC_ERROR, code=code, message=message)
    response = client.post(url, json=HEALTH)
    assert response.status_code == 200
    assert response.json() == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {"code": code, "message": expected},
    }


def test_slow_answers_arrive_late_but_whole(
    net: SimNetwork, url: str, client: httpx.Client
) -> None:
    """A slow fault delays the answer by its delay, then answers normally."""
    net.faults.add(FaultKind.SLOW, delay=0.3)
    started = time.perf_counter()
    health = result(client, url, "getHealth")
    assert time.perf_counter() - started >= 0.3
    assert health["status"] == "healthy"


def test_slow_answers_trip_client_timeouts(net: SimNetwork, url: str) -> None:
    """A delay longer than the client's read timeout surfaces as a timeout."""
    net.faults.add(FaultKind.SLOW, delay=1.0)
    with (
        httpx.Client(timeout=httpx.Timeout(5, read=0.2)) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.post(url, json=HEALTH)


def test_dropped_connections_send_no_response(
    net: SimNetwork, url: str, client: httpx.Client
) -> None:
    """A drop closes the socket before any response byte; the next request succeeds."""
    net.faults.add(FaultKind.DROP)
    with pytest.raises(httpx.RemoteProtocolError, match="without sending"):
        client.post(url, json=HEALTH)
    assert result(client, url, "getHealth")["status"] == "healthy"


def test_non_json_bodies(net: SimNetwork, url: str, client: httpx.Client) -> None:
    """non_json answers 200 with an HTML page instead of JSON."""
    net.faults.add(FaultKind.NON_JSON)
    response = client.post(url, json=HEALTH)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_truncated_bodies_are_a_prefix_of_the_real_answer(
    net: SimNetwork, url: str, client: httpx.Client
) -> None:
    """truncated sends the first half of the real answer: it does not parse."""
    net.faults.add(FaultKind.TRUNCATED, method="getLedgers")
    params = {"startLedger": 2, "pagination": {"limit": 3}}
    cut = client.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": "getLedgers", "params": params}
    )
    whole = client.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": "getLedgers", "params": params}
    )
    with pytest.raises(json.JSONDecodeError):
        cut.json()
    assert whole.content.startswith(cut.content)
    assert 0 < len(cut.content) < len(whole.content)


def test_wrong_shape_results_are_valid_json_rpc(
    net: SimNetwork, url: str, client: httpx.Client
) -> None:
    """wrong_shape keeps the envelope but the result is an array, not the method's object."""
    net.faults.add(FaultKind.WRONG_SHAPE)
    assert rpc(client, url, "getLatestLedger") == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": ["unexpected"],
    }


def test_counts_and_counters_prove_retries(net: SimNetwork, url: str, client: httpx.Client) -> None:
    """times=2 fails two requests; the counters show all three attempts of getEvents."""
    net.faults.add(FaultKind.HTTP_503, method="getEvents", times=2)
    params = {"startLedger": 2}
    statuses = [
        client.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": "getEvents", "params": params}
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [503, 503, 200]
    result(client, url, "getHealth")
    assert net.requests_served == {"getEvents": 3, "getHealth": 1}


def test_predicates_pick_the_requests_that_fail(
    net: SimNetwork, url: str, client: httpx.Client
) -> None:
    """Only getLedgers pages covering ledger 20 fail; other pages pass."""
    net.faults.add(
        FaultKind.RPC_ERROR, method="getLedgers", times=None, when=ledgers_page_covers(20)
    )
    assert "result" in rpc(
        client, url, "getLedgers", {"startLedger": 2, "pagination": {"limit": 10}}
    )
    assert "error" in rpc(
        client, url, "getLedgers", {"startLedger": 15, "pagination": {"limit": 10}}
    )
    assert "error" in rpc(client, url, "getLedgers", {"pagination": {"cursor": "19", "limit": 3}})
    assert "result" in rpc(
        client, url, "getLedgers", {"startLedger": 21, "pagination": {"limit": 10}}
    )


def test_faults_can_be_scripted_over_http(net: SimNetwork, url: str, client: httpx.Client) -> None:
    """The control API adds, lists and removes rules; match narrows them by params."""
    rule = client.post(
        url + "_simnet/faults",
        json={
            "kind": "rpc_error",
            "method": "getEvents",
            "code": -32001,
            "times": None,
            "match": {"startLedger": 5},
        },
    )
    assert rule.status_code == 201
    assert rpc(client, url, "getEvents", {"startLedger": 5})["error"]["code"] == -32001
    assert "result" in rpc(client, url, "getEvents", {"startLedger": 6})
    listed = client.get(url + "_simnet/faults").json()["faults"]
    assert [(r["id"], r["fired"]) for r in listed] == [(rule.json()["id"], 1)]
    assert client.delete(url + f"_simnet/faults/{rule.json()['id']}").json() == {"faults": []}
    client.post(url + "_simnet/faults", json={"kind": "http_503", "times": None})
    assert client.delete(url + "_simnet/faults").json() == {"faults": []}
    assert "result" in rpc(client, url, "getEvents", {"startLedger": 5})
    burst = client.post(url + "_simnet/faults", json={"kind": "empty", "forSecs": 30})
    assert burst.status_code == 201 and 0 < burst.json()["expiresInSecs"] <= 30


@pytest.mark.parametrize(
    "body",
    [
        {"method": "getHealth"},
        {"kind": "meltdown"},
        {"kind": "slow", "delay": -1},
        {"kind": "drop", "bogus": 1},
        {"kind": "http_401", "forSecs": 0},
    ],
)
def test_bad_fault_rules_are_400(
    url: str, client: httpx.Client, net: SimNetwork, body: dict[str, object]
) -> None:
    """A malformed rule is refused with 400 and a reason, never a 500."""
    response = client.post(url + "_simnet/faults", json=body)
    assert response.status_code == 400
    assert response.json()["error"]
    assert net.faults.rules == []


def test_request_counters_over_http(net: SimNetwork, url: str, client: httpx.Client) -> None:
    """/_simnet/requests reports calls per method and can be reset."""
    result(client, url, "getNetwork")
    result(client, url, "getNetwork")
    assert client.get(url + "_simnet/requests").json() == {"requests": {"getNetwork": 2}}
    assert client.delete(url + "_simnet/requests").json() == {"requests": {}}
