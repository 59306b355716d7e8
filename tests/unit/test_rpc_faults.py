"""StellarRpc against real loopback servers: each kind of fault gets its own message, naming
the (redacted) URL, and every new error class survives pickling."""

from __future__ import annotations

import asyncio
import pickle
import socket

import httpx
import pytest

from stellar_reconciler.errors import (
    LedgerOutOfRangeError,
    RpcError,
    RpcHttpStatusError,
    RpcMalformedError,
    RpcRequestError,
    RpcTransientError,
    RpcUnreachableError,
    StopDeadlineError,
)
from stellar_reconciler.rpc import RetryPolicy, StellarRpc
from stellar_reconciler.simnet import FaultKind, SimNetConfig, SimNetwork, serve_in_thread
from tests.integration.harness import wait_for
from tests.loopback import closed_port, silent_server

ONCE = RetryPolicy(max_attempts=1, initial_backoff=0.001, max_backoff=0.001)


async def health_error(url: str, read_secs: float = 5.0) -> RpcError:
    """The error getHealth raises against `url` (fails the test if it succeeds)."""
    async with httpx.AsyncClient(timeout=read_secs) as client:
        rpc = StellarRpc(client, url, ONCE)
        with pytest.raises(RpcError) as caught:
            await rpc.get_health()
    return caught.value


async def test_connection_refused_names_the_url_and_the_fault() -> None:
    """A closed loopback port is told as 'refused', with the URL and what to check."""
    url = f"http://127.0.0.1:{closed_port()}/"
    error = await health_error(url)
    assert isinstance(error, RpcUnreachableError) and error.fault == "refused"
    assert url in str(error) and "refused" in str(error) and "STELLAR_RPC_URL" in str(error)


async def test_a_server_that_never_answers_is_a_timeout() -> None:
    """Accepted but unanswered requests are told as 'timeout', not as a refused connection."""
    with silent_server() as port:
        error = await health_error(f"http://127.0.0.1:{port}/", read_secs=0.3)
    assert isinstance(error, RpcUnreachableError) and error.fault == "timeout"
    assert f"127.0.0.1:{port}" in str(error) and "no answer in time" in str(error)


async def test_https_to_a_plain_server_is_a_tls_fault() -> None:
    """https:// to something that does not speak TLS is told as a TLS fault."""
    with silent_server(b"HTTP/1.1 400 not tls\r\n\r\n") as port:
        error = await health_error(f"https://127.0.0.1:{port}/")
    assert isinstance(error, RpcUnreachableError) and error.fault == "tls", error
    assert "TLS handshake failed" in str(error)


async def test_a_name_that_does_not_resolve_is_a_dns_fault() -> None:
    """A resolver failure (faked at the transport, so no lookup leaves the machine) is 'dns'."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno -2] Name or service not known") from socket.gaierror(
            -2, "Name or service not known"
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        rpc = StellarRpc(client, "http://rpc.example.invalid/", ONCE)
        with pytest.raises(RpcUnreachableError) as caught:
            await rpc.get_health()
    assert caught.value.fault == "dns" and "does not resolve" in str(caught.value)


async def test_a_request_awaiting_its_answer_is_listed_as_pending() -> None:
    """While getHealth waits on a silent server, pending() names it and its redacted URL."""
    with silent_server() as port:
        async with httpx.AsyncClient(timeout=30) as client:
            rpc = StellarRpc(client, f"http://k:secret@127.0.0.1:{port}/", ONCE)
            call = asyncio.create_task(rpc.get_health())
            await wait_for(rpc.pending, 10, "getHealth to be on the wire")
            [(method, url, _)] = rpc.pending()
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
    assert (method, url) == ("getHealth", f"http://***@127.0.0.1:{port}/")
    assert rpc.pending() == []


@pytest.mark.parametrize(
    ("kind", "error_type", "words"),
    [
        (FaultKind.HTTP_401, RpcHttpStatusError, "HTTP 401"),
        (FaultKind.HTTP_403, RpcHttpStatusError, "HTTP 403"),
        (FaultKind.HTTP_520, RpcHttpStatusError, "HTTP 520"),
        (FaultKind.HTTP_503, RpcTransientError, "HTTP 503"),
        (FaultKind.NON_JSON, RpcMalformedError, "not JSON"),
        (FaultKind.EMPTY, RpcMalformedError, "empty body"),
        (FaultKind.TRUNCATED, RpcMalformedError, "cut short"),
    ],
)
async def test_http_faults_are_told_apart_without_leaking_the_key(
    kind: FaultKind, error_type: type[RpcError], words: str
) -> None:
    """HTTP statuses and malformed bodies each say what came back, from the redacted URL."""
    net = SimNetwork(SimNetConfig(first_ledger=2, prebuilt_ledgers=3))
    net.faults.add(kind, times=None)
    with serve_in_thread(net) as url:
        secret_url = url.replace("http://", "http://user:hunter2@") + "?apikey=s3cr3t"
        error = await health_error(secret_url)
    assert type(error) is error_type, error
    assert words in str(error)
    assert "hunter2" not in str(error) and "s3cr3t" not in str(error)
    assert url.replace("http://", "http://***@") + "?apikey=***" in str(error)


@pytest.mark.parametrize("code", [-32600, -32601, -32602, -32700])
async def test_json_rpc_error_codes_are_named(code: int) -> None:
    """A JSON-RPC error says its code and the URL it came from."""
    net = SimNetwork(SimNetConfig(first_ledger=2, prebuilt_ledgers=3))
    net.faults.add(FaultKind.RPC_ERROR, code=code, message="no", times=None)
    with serve_in_thread(net) as url:
        error = await health_error(url)
    assert isinstance(error, RpcRequestError) and error.code == code
    assert f"JSON-RPC error {code} from {url}" in str(error)


@pytest.mark.parametrize(
    "error",
    [
        RpcUnreachableError("getHealth", "http://h/", "refused", "ConnectError"),
        RpcRequestError("getEvents", -32602, "bad limit", "http://h/"),
        LedgerOutOfRangeError("getEvents", -32600, "ledger range: 1 - 2", "http://h/"),
        RpcHttpStatusError("getHealth", "http://h/", 401),
        RpcMalformedError("getHealth", "http://h/", "HTTP 200 with an empty body"),
        StopDeadlineError(9.0, "a batch commit in the database"),
    ],
)
def test_new_errors_survive_pickling(error: Exception) -> None:
    """Errors cross process boundaries (the fetch process) intact: same type, same message."""
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes, made just above)
    assert type(copy) is type(error) and str(copy) == str(error)
    assert vars(copy) == vars(error)
