"""FaultBook: scripted misbehaviour of the simulated network's JSON-RPC endpoint.

A rule names what goes wrong (FaultKind), for which method (or any), for which params (a
Python predicate, or a JSON subset that the params must contain), and how many times (a
count, or until cleared). Each request takes at most one rule: the oldest that applies.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

ParamPredicate = Callable[[Mapping[str, Any]], bool]


class FaultKind(StrEnum):
    HTTP_500 = "http_500"  # empty body, as stellar-rpc's duration limiter answers
    HTTP_502 = "http_502"  # a proxy's "Bad Gateway" page
    HTTP_503 = "http_503"  # empty body: stellar-rpc's global request queue is full
    HTTP_504 = "http_504"  # empty body: stellar-rpc's global execution time cap
    HTTP_429 = "http_429"  # a provider's rate limit, optionally with Retry-After
    HTTP_401 = "http_401"  # a provider refusing a missing or wrong API key
    HTTP_403 = "http_403"  # a provider or firewall refusing the client
    HTTP_520 = "http_520"  # a CDN's "unknown error" from the origin
    RPC_ERROR = "rpc_error"  # a JSON-RPC error object with any code and message
    SLOW = "slow"  # wait `delay` seconds, then answer normally
    DROP = "drop"  # close the connection without sending a response
    NON_JSON = "non_json"  # HTTP 200 with an HTML page
    EMPTY = "empty"  # HTTP 200 with an empty body
    TRUNCATED = "truncated"  # HTTP 200 with the first half of the real answer
    WRONG_SHAPE = "wrong_shape"  # a valid envelope whose result has the wrong shape


HTTP_STATUS = {
    FaultKind.HTTP_500: 500,
    FaultKind.HTTP_502: 502,
    FaultKind.HTTP_503: 503,
    FaultKind.HTTP_504: 504,
    FaultKind.HTTP_429: 429,
    FaultKind.HTTP_401: 401,
    FaultKind.HTTP_403: 403,
    FaultKind.HTTP_520: 520,
}

# What stellar-rpc says for these codes, used when a rule gives no message.
DEFAULT_MESSAGES = {
    -32603: "latency (45s) since last known ledger closed is too high (>30s)",
    -32001: "request exceeded processing limit threshold",
    -32098: "rpc queue for {method} surpassed queue limit of 10 requests",
}


@dataclass(slots=True)
class FaultRule:
    id: int
    kind: FaultKind
    method: str | None = None
    remaining: int | None = 1
    when: ParamPredicate | None = None
    match: Mapping[str, Any] | None = None
    code: int = -32603
    message: str | None = None
    delay: float = 0.0
    retry_after: str | None = None
    body: str | None = None
    # time.monotonic() after which the rule no longer applies (a burst of N seconds).
    expires_at: float | None = None
    fired: int = field(default=0)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def applies(self, method: str, params: Any) -> bool:
        if self.method not in (None, "*", method):
            return False
        mapping = params if isinstance(params, Mapping) else {}
        if self.match is not None and not contains(mapping, self.match):
            return False
        return self.when is None or bool(self.when(mapping))

    def error_message(self, method: str) -> str:
        template = self.message or DEFAULT_MESSAGES.get(self.code, "internal error")
        return template.replace("{method}", method)

    def describe(self) -> dict[str, Any]:
        """A JSON-safe description (the predicate is shown only as present or not)."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "method": self.method,
            "remaining": self.remaining,
            "match": dict(self.match) if self.match is not None else None,
            "predicate": self.when is not None,
            "code": self.code,
            "message": self.message,
            "delay": self.delay,
            "retryAfter": self.retry_after,
            "expiresInSecs": (
                None
                if self.expires_at is None
                else round(max(0.0, self.expires_at - time.monotonic()), 3)
            ),
            "fired": self.fired,
        }


class FaultBook:
    """Thread-safe: tests add rules from their thread while the server thread takes them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)

    def add(
        self,
        kind: FaultKind | str,
        *,
        method: str | None = None,
        times: int | None = 1,
        when: ParamPredicate | None = None,
        match: Mapping[str, Any] | None = None,
        code: int = -32603,
        message: str | None = None,
        delay: float = 0.0,
        retry_after: float | str | None = None,
        body: str | None = None,
        for_secs: float | None = None,
    ) -> FaultRule:
        """Add a rule; `times=None` keeps it until cleared, `for_secs` ends it after that many
        seconds (a burst). Returns the rule (see `.fired`)."""
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 or None (until cleared), got {times}")
        if for_secs is not None and for_secs <= 0:
            raise ValueError(f"for_secs must be greater than 0 or None, got {for_secs}")
        if delay < 0:
            raise ValueError(f"delay must not be negative, got {delay}")
        rule = FaultRule(
            id=next(self._ids),
            kind=FaultKind(kind),
            method=method,
            remaining=times,
            when=when,
            match=match,
            code=code,
            message=message,
            delay=delay,
            retry_after=_retry_after_text(retry_after),
            body=body,
            expires_at=None if for_secs is None else time.monotonic() + for_secs,
        )
        with self._lock:
            self._rules.append(rule)
        return rule

    def take(self, method: str, params: Any) -> FaultRule | None:
        """The rule this request triggers, counting it; None when the request goes through."""
        now = time.monotonic()
        with self._lock:
            self._rules = [rule for rule in self._rules if not rule.expired(now)]
            for rule in self._rules:
                if rule.applies(method, params):
                    rule.fired += 1
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining == 0:
                            self._rules.remove(rule)
                    return rule
        return None

    def remove(self, rule_id: int) -> bool:
        with self._lock:
            for rule in self._rules:
                if rule.id == rule_id:
                    self._rules.remove(rule)
                    return True
        return False

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)


def contains(params: Mapping[str, Any], subset: Mapping[str, Any]) -> bool:
    """True when each key of `subset` is in `params` with an equal (or containing) value."""
    for key, expected in subset.items():
        if key not in params:
            return False
        actual = params[key]
        if isinstance(expected, Mapping):
            if not isinstance(actual, Mapping) or not contains(actual, expected):
                return False
        elif actual != expected:
            return False
    return True


def ledgers_page_covers(sequence: int) -> ParamPredicate:
    """Predicate for getLedgers: the requested page (startLedger or cursor + 1, then `limit`
    ledgers, 50 by default) would include ledger `sequence`."""

    def predicate(params: Mapping[str, Any]) -> bool:
        pagination = _mapping(params.get("pagination"))
        start = params.get("startLedger")
        cursor = pagination.get("cursor")
        if isinstance(cursor, str) and cursor.isdigit():
            start = int(cursor) + 1
        limit = pagination.get("limit")
        count = limit if isinstance(limit, int) and limit > 0 else 50
        return isinstance(start, int) and start <= sequence < start + count

    return predicate


def events_scan_covers(sequence: int) -> ParamPredicate:
    """Predicate for getEvents: the scanned range (startLedger or the cursor's ledger, up to
    endLedger exclusive or 10,000 ledgers) includes ledger `sequence`."""

    def predicate(params: Mapping[str, Any]) -> bool:
        start = params.get("startLedger")
        cursor = _mapping(params.get("pagination")).get("cursor")
        if isinstance(cursor, str) and cursor.split("-", 1)[0].isdigit():
            start = int(cursor.split("-", 1)[0]) >> 32
        if not isinstance(start, int):
            return False
        end = params.get("endLedger")
        stop = end if isinstance(end, int) and end else start + 10_000
        return start <= sequence < stop

    return predicate


def starts_at(sequence: int) -> ParamPredicate:
    """Predicate: the request's startLedger is exactly `sequence`."""
    return lambda params: params.get("startLedger") == sequence


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _retry_after_text(value: float | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)
