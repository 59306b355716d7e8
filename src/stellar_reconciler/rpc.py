"""StellarRpc: typed calls to the Stellar RPC JSON-RPC API over an injected httpx.AsyncClient.

Faults are sorted into three kinds (see errors.py): transient ones are retried here with
capped exponential backoff and jitter (honouring Retry-After); a rejected request or an
answer that breaks the protocol is raised at once, because sending it again cannot help.
"""

from __future__ import annotations

import email.utils
import itertools
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import stamina

from stellar_reconciler.answers import int_field, network_tip, str_field
from stellar_reconciler.answers import parse_event as parse_event
from stellar_reconciler.answers import parse_ledger as parse_ledger
from stellar_reconciler.config import Settings, redact_url
from stellar_reconciler.decode import decode_bare_header
from stellar_reconciler.errors import (
    DecodeError,
    LedgerOutOfRangeError,
    RpcError,
    RpcHttpStatusError,
    RpcMalformedError,
    RpcProtocolError,
    RpcRequestError,
    RpcTransientError,
    RpcUnreachableError,
)
from stellar_reconciler.models import LedgerHeader, NetworkInfo, NetworkTip, RawEvent
from stellar_reconciler.transactions import TransactionOutcome, parse_transaction

# JSON-RPC codes the Stellar RPC uses for overload and internal faults: worth another try.
TRANSIENT_CODES = frozenset({-32603, -32001, -32098})
TRANSIENT_HTTP = frozenset({429, 500, 502, 503, 504})
# The real server refuses a Retry-After beyond this from us: a provider asking for more than
# ten minutes is treated as if it had asked for ten.
MAX_RETRY_AFTER_SECS = 600.0


class RpcObserver(Protocol):
    """Told about every attempt, so metrics can count requests, errors and retries."""

    def rpc_attempt(self, method: str, outcome: str, seconds: float, error: str | None) -> None: ...

    def rpc_retry(self, method: str) -> None: ...


class _NullObserver:
    def rpc_attempt(self, method: str, outcome: str, seconds: float, error: str | None) -> None:
        return None

    def rpc_retry(self, method: str) -> None:
        return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_backoff: float = 0.25
    max_backoff: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            max_attempts=settings.rpc_max_attempts,
            initial_backoff=settings.rpc_initial_backoff_ms / 1000,
            max_backoff=settings.rpc_max_backoff_secs,
        )


def new_http_client(timeout_secs: float, user_agent: str) -> httpx.AsyncClient:
    """The HTTP client every StellarRpc of the service uses (the fetch process's too)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_secs, connect=min(10.0, timeout_secs)),
        limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
        headers={"user-agent": user_agent},
    )


@dataclass(frozen=True, slots=True)
class LatestLedger:
    sequence: int
    hash: str
    protocol_version: int
    close_time: int
    header: LedgerHeader | None


@dataclass(frozen=True, slots=True)
class LedgersPage:
    ledgers: list[LedgerHeader]
    tip: NetworkTip
    cursor: str


@dataclass(frozen=True, slots=True)
class EventsPage:
    events: list[RawEvent]
    tip: NetworkTip
    cursor: str


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_SECS)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, min((when - datetime.now(UTC)).total_seconds(), MAX_RETRY_AFTER_SECS))


def _transport_fault(exc: httpx.TransportError) -> str:
    """dns, refused, timeout, tls or connection: what lies under httpx's wrapper."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, socket.gaierror):
            return "dns"
        if isinstance(cause, ConnectionRefusedError):
            return "refused"
        if isinstance(cause, ssl.SSLError):
            return "tls"
        cause = cause.__cause__ or cause.__context__
    # httpcore re-raises some of these as its own exceptions with only the message kept.
    text = str(exc)
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "dns"
    if "Temporary failure in name resolution" in text or "Errno -3" in text:
        return "dns"
    if "Connection refused" in text or "Errno 111" in text:
        return "refused"
    if "SSL" in text or "CERTIFICATE" in text.upper():
        return "tls"
    return "connection"


def _describe_body(response: httpx.Response) -> str:
    """What a 200 answer that is not JSON-RPC looks like, for the error message."""
    body = response.content
    if not body.strip():
        return "HTTP 200 with an empty body"
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    if body.lstrip()[:1] in (b"{", b"["):
        return f"HTTP 200 with JSON cut short or invalid ({len(body)} bytes, {kind})"
    return f"HTTP 200 with a body that is not JSON ({len(body)} bytes, {kind})"


def _backoff_hook(exc: Exception) -> bool | float:
    if isinstance(exc, RpcTransientError):
        return exc.retry_after if exc.retry_after is not None else True
    return False


class StellarRpc:
    """The Stellar RPC methods a follower needs, with retries and metrics on every call."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        retry: RetryPolicy | None = None,
        observer: RpcObserver | None = None,
    ) -> None:
        self._client = client
        self._url = url
        # What messages, logs and pages show: an API key in the URL must not leak.
        self.shown_url = redact_url(url)
        self._retry = retry or RetryPolicy()
        self._observer: RpcObserver = observer or _NullObserver()
        self._ids = itertools.count(1)
        # Requests on the wire: request id -> (method, monotonic start), for "waiting for...".
        self._in_flight: dict[int, tuple[str, float]] = {}
        # Retries are counted by the observer and failed polls are summarised by the worker;
        # stamina's own warning per retry is what flooded the log against a dead RPC.
        stamina.instrumentation.set_on_retry_hooks([])

    @classmethod
    def from_settings(cls, settings: Settings, observer: RpcObserver | None = None) -> StellarRpc:
        """The client of STELLAR_RPC_URL, with the settings' timeout, user agent and retries."""
        client = new_http_client(settings.rpc_timeout_secs, settings.user_agent)
        policy = RetryPolicy.from_settings(settings)
        return cls(client, settings.stellar_rpc_url, policy, observer=observer)

    @property
    def url(self) -> str:
        return self._url

    def pending(self) -> list[tuple[str, str, float]]:
        """The requests awaiting an answer, oldest first: (method, shown URL, monotonic start)."""
        calls = sorted(self._in_flight.values(), key=lambda call: call[1])
        return [(method, self.shown_url, started) for method, started in calls]

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Call a method, retrying transient faults; return its `result` object."""
        first = True
        async for attempt in stamina.retry_context(
            on=_backoff_hook,
            attempts=self._retry.max_attempts,
            timeout=None,
            wait_initial=self._retry.initial_backoff,
            wait_max=self._retry.max_backoff,
            wait_jitter=self._retry.initial_backoff,
        ):
            if not first:
                self._observer.rpc_retry(method)
            first = False
            with attempt:
                return await self._call_once(method, params)
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    async def _call_once(self, method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
        request_id = next(self._ids)
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params:
            body["params"] = dict(params)
        started = time.perf_counter()
        outcome = "ok"
        error: str | None = None
        self._in_flight[request_id] = (method, time.monotonic())
        try:
            response = await self._client.post(self._url, json=body)
            result = self._result(method, response)
        except httpx.TransportError as exc:
            fault = _transport_fault(exc)
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if fault == "timeout":
                detail = f"{type(exc).__name__} after {self._client.timeout.read}s"
            unreachable = RpcUnreachableError(method, self.shown_url, fault, detail)
            outcome = "timeout" if fault == "timeout" else "connection"
            error = str(unreachable)
            raise unreachable from exc
        except RpcTransientError as exc:
            outcome, error = ("throttled" if "429" in str(exc) else "transient"), str(exc)
            raise
        except RpcRequestError as exc:
            outcome, error = "rejected", str(exc)
            raise
        except RpcError as exc:
            outcome, error = "malformed", str(exc)
            raise
        finally:
            self._in_flight.pop(request_id, None)
            self._observer.rpc_attempt(method, outcome, time.perf_counter() - started, error)
        return result

    def _result(self, method: str, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if status in TRANSIENT_HTTP:
            retry_after = _retry_after_seconds(response.headers.get("retry-after"))
            raise RpcTransientError(
                method, f"HTTP {status} from {self.shown_url}", retry_after=retry_after
            )
        if status != 200:
            raise RpcHttpStatusError(method, self.shown_url, status)
        try:
            envelope = response.json()
        except ValueError as exc:
            raise RpcMalformedError(method, self.shown_url, _describe_body(response)) from exc
        if not isinstance(envelope, dict):
            raise RpcMalformedError(method, self.shown_url, "the answer is not a JSON-RPC object")
        error = envelope.get("error")
        if error is not None:
            raise self._rpc_error(method, error)
        result = envelope.get("result")
        if not isinstance(result, dict):
            raise RpcMalformedError(method, self.shown_url, "the answer has no 'result' object")
        return result

    def _rpc_error(self, method: str, error: Any) -> RpcError:
        if not isinstance(error, dict) or not isinstance(error.get("code"), int):
            return RpcMalformedError(method, self.shown_url, f"malformed JSON-RPC error {error!r}")
        code = int(error["code"])
        message = str(error.get("message", ""))
        if code in TRANSIENT_CODES:
            return RpcTransientError(
                method, f"JSON-RPC error {code} from {self.shown_url}: {message}"
            )
        if code == -32600 and "ledger range" in message:
            return LedgerOutOfRangeError(method, code, message, self.shown_url)
        return RpcRequestError(method, code, message, self.shown_url)

    # --- methods -------------------------------------------------------------------------

    async def get_health(self) -> NetworkTip:
        result = await self.call("getHealth")
        status = result.get("status")
        if status != "healthy":
            raise RpcTransientError("getHealth", f"node reports status {status!r}")
        return network_tip(result, "getHealth")

    async def get_network(self) -> NetworkInfo:
        result = await self.call("getNetwork")
        return NetworkInfo(
            passphrase=str_field(result, "passphrase", "getNetwork"),
            protocol_version=int_field(result, "protocolVersion", "getNetwork"),
        )

    async def get_latest_ledger(self) -> LatestLedger:
        result = await self.call("getLatestLedger")
        header_xdr = result.get("headerXdr")
        header = None
        if isinstance(header_xdr, str) and header_xdr:
            try:
                header = decode_bare_header(header_xdr)
            except DecodeError as exc:
                raise RpcProtocolError("getLatestLedger", str(exc)) from exc
        return LatestLedger(
            sequence=int_field(result, "sequence", "getLatestLedger"),
            hash=str_field(result, "id", "getLatestLedger").lower(),
            protocol_version=int_field(result, "protocolVersion", "getLatestLedger"),
            close_time=int_field(result, "closeTime", "getLatestLedger", optional=True),
            header=header,
        )

    async def get_ledgers(
        self, start_ledger: int | None = None, *, cursor: str | None = None, limit: int = 50
    ) -> LedgersPage:
        params: dict[str, Any] = {"pagination": {"limit": limit}}
        if cursor is not None:
            params["pagination"]["cursor"] = cursor
        else:
            params["startLedger"] = start_ledger
        result = await self.call("getLedgers", params)
        items = result.get("ledgers")
        if not isinstance(items, list):
            raise RpcProtocolError("getLedgers", "answer has no 'ledgers' list")
        return LedgersPage(
            ledgers=[parse_ledger(item) for item in items],
            tip=network_tip(result, "getLedgers"),
            cursor=str(result.get("cursor") or ""),
        )

    async def get_events(
        self,
        *,
        start_ledger: int | None = None,
        end_ledger: int | None = None,
        cursor: str | None = None,
        filters: list[dict[str, Any]] | None = None,
        limit: int = 10000,
    ) -> EventsPage:
        params: dict[str, Any] = {"pagination": {"limit": limit}}
        if cursor is not None:
            params["pagination"]["cursor"] = cursor
        else:
            params["startLedger"] = start_ledger
            if end_ledger is not None:
                params["endLedger"] = end_ledger
        if filters:
            params["filters"] = filters
        result = await self.call("getEvents", params)
        items = result.get("events")
        if items is None:
            items = []
        if not isinstance(items, list):
            raise RpcProtocolError("getEvents", "answer's 'events' is not a list")
        page_cursor = result.get("cursor")
        if not isinstance(page_cursor, str) or not page_cursor:
            raise RpcProtocolError("getEvents", "answer has no 'cursor' (server older than 22?)")
        return EventsPage(
            events=[parse_event(item) for item in items],
            tip=network_tip(result, "getEvents"),
            cursor=page_cursor,
        )

    async def get_transaction(self, tx_hash: str) -> TransactionOutcome:
        """What the node knows of one transaction (hex hash): SUCCESS, FAILED or NOT_FOUND."""
        result = await self.call("getTransaction", {"hash": tx_hash.lower()})
        return parse_transaction(result, tx_hash)
