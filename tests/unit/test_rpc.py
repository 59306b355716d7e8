"""StellarRpc: which faults are retried, which are not, and what every attempt records."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stellar_reconciler.answers import _parse_event_carefully, parse_event
from stellar_reconciler.errors import (
    LedgerOutOfRangeError,
    RpcHttpStatusError,
    RpcMalformedError,
    RpcProtocolError,
    RpcRequestError,
    RpcTransientError,
)
from stellar_reconciler.rpc import (
    RetryPolicy,
    StellarRpc,
    _backoff_hook,
    _retry_after_seconds,
)
from tests.fixtures import load

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.002)
URL = "http://rpc.test/"


class Recorder:
    """An RpcObserver that keeps every attempt."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, str]] = []
        self.retries = 0

    def rpc_attempt(self, method: str, outcome: str, seconds: float, error: str | None) -> None:
        self.attempts.append((method, outcome))

    def rpc_retry(self, method: str) -> None:
        self.retries += 1


def scripted(*responses: httpx.Response | Exception) -> Callable[[httpx.Request], httpx.Response]:
    """A transport handler answering with each response in turn (the last one repeats)."""
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    return handler


def ok(result: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "result": result})


def rpc_error(code: int, message: str = "boom") -> httpx.Response:
    return httpx.Response(
        200, json={"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": message}}
    )


HEALTH = {
    "status": "healthy",
    "latestLedger": 100,
    "latestLedgerCloseTime": "1700000500",
    "oldestLedger": 1,
    "oldestLedgerCloseTime": 1700000000,
    "ledgerRetentionWindow": 120960,
}


async def call_health(*responses: httpx.Response | Exception) -> tuple[Recorder, Any]:
    recorder = Recorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(scripted(*responses))) as client:
        rpc = StellarRpc(client, URL, FAST, recorder)
        try:
            return recorder, await rpc.get_health()
        except Exception as exc:  # noqa: BLE001 - the test inspects whatever was raised
            return recorder, exc


@pytest.mark.parametrize(
    "fault",
    [
        httpx.Response(500),
        httpx.Response(502),
        httpx.Response(503, content=b""),
        httpx.Response(504),
        httpx.Response(429, headers={"retry-after": "0"}),
        rpc_error(-32603, "latency since last known ledger closed is too high (>30s)"),
        rpc_error(-32001, "request exceeded processing limit threshold"),
        rpc_error(-32098),
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("reset"),
    ],
)
async def test_transient_faults_are_retried_then_succeed(fault: Any) -> None:
    """Each transient fault is retried, and the call succeeds once the RPC recovers."""
    recorder, result = await call_health(fault, fault, ok(HEALTH))
    assert result.latest_ledger == 100 and result.oldest_ledger == 1
    assert [o for _, o in recorder.attempts][-1] == "ok"
    assert len(recorder.attempts) == 3 and recorder.retries == 2


async def test_transient_fault_gives_up_after_max_attempts() -> None:
    """A fault that persists raises RpcTransientError after exactly RPC_MAX_ATTEMPTS tries."""
    recorder, result = await call_health(httpx.Response(500))
    assert isinstance(result, RpcTransientError)
    assert "HTTP 500" in str(result)
    assert len(recorder.attempts) == FAST.max_attempts


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (
            rpc_error(-32600, "startLedger must be within the ledger range: 50 - 100"),
            LedgerOutOfRangeError,
        ),
        (rpc_error(-32600, "invalid request"), RpcRequestError),
        (rpc_error(-32601, "method not found"), RpcRequestError),
        (rpc_error(-32602, "limit must not exceed 10000"), RpcRequestError),
        (httpx.Response(200, content=b"<html>not json"), RpcMalformedError),
        (httpx.Response(200, json={"jsonrpc": "2.0", "id": 1}), RpcMalformedError),
        (
            httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "result": {"status": "healthy"}}),
            RpcProtocolError,
        ),
        (httpx.Response(404, content=b"no such page"), RpcHttpStatusError),
    ],
)
async def test_permanent_faults_are_not_retried(
    fault: httpx.Response, kind: type[Exception]
) -> None:
    """Rejected requests and malformed answers raise at once, after a single attempt."""
    recorder, result = await call_health(fault, ok(HEALTH))
    assert type(result) is kind
    assert len(recorder.attempts) == 1 and recorder.retries == 0


def test_retry_after_header_sets_the_backoff() -> None:
    """A 429's Retry-After (seconds or HTTP date) becomes the next backoff."""
    assert _retry_after_seconds("7") == 7.0
    assert _retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert _retry_after_seconds("nonsense") is None
    assert _backoff_hook(RpcTransientError("getEvents", "HTTP 429", retry_after=3.0)) == 3.0
    assert _backoff_hook(RpcTransientError("getEvents", "HTTP 503")) is True
    assert _backoff_hook(RpcRequestError("getEvents", -32602, "bad")) is False


async def test_connection_refused_on_a_real_closed_port_is_transient() -> None:
    """A real refused TCP connection on loopback counts as a transient fault."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    recorder = Recorder()
    async with httpx.AsyncClient() as client:
        rpc = StellarRpc(client, f"http://127.0.0.1:{port}/", FAST, recorder)
        with pytest.raises(RpcTransientError, match="connection"):
            await rpc.get_health()
    assert {o for _, o in recorder.attempts} == {"connection"}


async def test_requests_use_by_name_params() -> None:
    """Every request is JSON-RPC 2.0 with a params object, never a positional array."""
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return ok(load("testnet_getEvents_native_transfers.result.json"))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        rpc = StellarRpc(client, URL, FAST)
        page = await rpc.get_events(start_ledger=3727845, end_ledger=3727846, limit=10)
    body = seen[0]
    assert body["jsonrpc"] == "2.0" and body["method"] == "getEvents"
    assert body["params"] == {
        "startLedger": 3727845,
        "endLedger": 3727846,
        "pagination": {"limit": 10},
    }
    assert [e.id for e in page.events] == [
        "0016010972359577600-0000000001",
        "0016010972359577600-0000000008",
    ]
    assert page.tip.latest_ledger == 3730843 and page.tip.latest_close_time == 1784671886


async def test_recorded_get_ledgers_parses_with_number_and_string_close_times() -> None:
    """Recorded getLedgers parses: ledgerCloseTime a string, latestLedgerCloseTime a number."""
    result = load("testnet_getLedgers_36233-36234.result.json")
    async with httpx.AsyncClient(transport=httpx.MockTransport(scripted(ok(result)))) as client:
        page = await StellarRpc(client, URL, FAST).get_ledgers(36233, limit=2)
    assert [h.sequence for h in page.ledgers] == [36233, 36234]
    assert page.ledgers[1].previous_hash == page.ledgers[0].hash
    assert page.cursor == "36234"
    assert [h.meta_size for h in page.ledgers] == [len(x["metadataXdr"]) for x in result["ledgers"]]


async def test_tampered_ledger_hash_is_a_protocol_error() -> None:
    """A served hash that does not match the header's sha256 is refused, not stored."""
    result = load("testnet_getLedgers_36233-36234.result.json")
    result["ledgers"][0]["hash"] = "00" * 32
    async with httpx.AsyncClient(transport=httpx.MockTransport(scripted(ok(result)))) as client:
        with pytest.raises(RpcProtocolError, match="hashes to"):
            await StellarRpc(client, URL, FAST).get_ledgers(36233, limit=2)


async def test_recorded_latest_ledger_parses() -> None:
    """The recorded getLatestLedger answer parses and its bare header hashes to its id."""
    result = load("testnet_getLatestLedger_1283415_p25.result.json")
    async with httpx.AsyncClient(transport=httpx.MockTransport(scripted(ok(result)))) as client:
        latest = await StellarRpc(client, URL, FAST).get_latest_ledger()
    assert latest.sequence == 1283415 and latest.protocol_version == 25
    assert latest.header is not None and latest.header.hash == latest.hash
    assert latest.close_time == 1772416629


_entry_fields = {
    "id": st.just("0000004294971392-0000000001"),
    "type": st.sampled_from(["contract", "system", "diagnostic"]),
    "ledger": st.integers(min_value=1, max_value=2**32 - 1),
    "ledgerClosedAt": st.just("2026-11-29T10:00:00Z"),
    "contractId": st.sampled_from(
        ["", "CAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
    ),
    "txHash": st.text(alphabet="0123456789abcdef", max_size=64),
    "transactionIndex": st.integers(min_value=0, max_value=2**20),
    "operationIndex": st.integers(min_value=0, max_value=2**12),
    "inSuccessfulContractCall": st.booleans(),
    "topic": st.lists(st.sampled_from(["AAAADwAAAAh0cmFuc2Zlcg==", "AAAAAQ=="]), max_size=4),
    "value": st.just("AAAAAQ=="),
}
_odd_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.floats(), st.lists(st.none())
)


def _outcome(parse: Callable[[Any], Any], entry: Any) -> Any:
    try:
        return parse(entry)
    except RpcProtocolError as exc:
        return ("refused", str(exc))


@given(
    st.fixed_dictionaries(_entry_fields),
    st.sets(st.sampled_from(sorted(_entry_fields))),
    st.dictionaries(st.sampled_from(sorted(_entry_fields)), _odd_values, max_size=2),
)
def test_parse_event_shortcut_agrees_with_the_careful_path(
    entry: dict[str, Any], dropped: set[str], odd: dict[str, Any]
) -> None:
    """The fast path for well-shaped entries returns, or refuses with, what the checks do."""
    shaped = {k: v for k, v in entry.items() if k not in dropped} | odd
    assert _outcome(parse_event, shaped) == _outcome(
        lambda e: _parse_event_carefully(e, "getEvents"), shaped
    )
    if not dropped and not odd:
        assert parse_event(shaped).topics_xdr == tuple(entry["topic"])
