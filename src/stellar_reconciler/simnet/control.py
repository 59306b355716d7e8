"""The control API under /_simnet/: drive the simulated network from another process.

GET    /_simnet/status                 tip, contracts, request counters, faults, tampering
POST   /_simnet/close                  {"count": n} close n ledgers (default 1)
GET    /_simnet/events?from=A&to=B     the record of events in ledgers A..B (inclusive)
GET    /_simnet/ledgers?from=A&to=B    the record of ledgers A..B with their hashes
GET    /_simnet/requests               JSON-RPC calls received per method
DELETE /_simnet/requests               reset those counters
GET    /_simnet/faults                 the fault rules in force
POST   /_simnet/faults                 add a rule (see FaultBook.add; JSON keys in camelCase)
DELETE /_simnet/faults                 clear all rules;  DELETE /_simnet/faults/{id}: one rule
GET    /_simnet/tamper                 what is being misreported
POST   /_simnet/tamper                 {"kind": "drop_event" | "alter_event" | "break_chain" |
                                        "retention", ...} (see _tamper)
DELETE /_simnet/tamper                 stop event-level tampering
GET    /_simnet/transactions           hashes declared failed or forgotten
POST   /_simnet/transactions           {"hash": h, "outcome": "failed" | "not_found",
                                        "ledger": n (optional, failed only)}: what
                                        getTransaction answers for h from now on

Bad input answers 400 with {"error": "..."}.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stellar_reconciler.simnet.network import SimNetwork

CONTROL_PREFIX = "/_simnet"


class ControlInputError(ValueError):
    """A control request the network cannot act on."""


def control_app(net: SimNetwork) -> Starlette:
    async def status(request: Request) -> Response:
        return JSONResponse(net.describe())

    async def close(request: Request) -> Response:
        body = await _json_body(request)
        count = _int(body.get("count", 1), "count")
        latest = await run_in_threadpool(net.close_ledgers, count)
        return JSONResponse({"latestLedger": latest})

    async def events(request: Request) -> Response:
        first, last = _range(request, net)
        records = await run_in_threadpool(net.record_events, first, last)
        return JSONResponse({"events": records})

    async def ledgers(request: Request) -> Response:
        first, last = _range(request, net)
        return JSONResponse({"ledgers": await run_in_threadpool(net.record_ledgers, first, last)})

    async def requests(request: Request) -> Response:
        if request.method == "DELETE":
            net.reset_requests()
        return JSONResponse({"requests": net.requests_served})

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            rule = net.faults.add(**_fault_args(await _json_body(request)))
            return JSONResponse(rule.describe(), status_code=201)
        if request.method == "DELETE":
            net.faults.clear()
        return JSONResponse({"faults": [rule.describe() for rule in net.faults.rules]})

    async def fault(request: Request) -> Response:
        if not net.faults.remove(_int(request.path_params["rule_id"], "rule id")):
            return JSONResponse({"error": "no such fault rule"}, status_code=404)
        return JSONResponse({"faults": [rule.describe() for rule in net.faults.rules]})

    async def tamper(request: Request) -> Response:
        if request.method == "POST":
            done = await run_in_threadpool(_tamper, net, await _json_body(request))
            return JSONResponse(done, status_code=201)
        if request.method == "DELETE":
            net.tamper.clear()
        return JSONResponse(net.describe()["tamper"])

    async def transactions(request: Request) -> Response:
        if request.method == "POST":
            done = _declare(net, await _json_body(request))
            return JSONResponse(done, status_code=201)
        return JSONResponse(net.transactions.describe())

    routes = [
        Route(f"{CONTROL_PREFIX}/status", status, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/close", close, methods=["POST"]),
        Route(f"{CONTROL_PREFIX}/events", events, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/ledgers", ledgers, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/requests", requests, methods=["GET", "DELETE"]),
        Route(f"{CONTROL_PREFIX}/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route(f"{CONTROL_PREFIX}/faults/{{rule_id}}", fault, methods=["DELETE"]),
        Route(f"{CONTROL_PREFIX}/tamper", tamper, methods=["GET", "POST", "DELETE"]),
        Route(f"{CONTROL_PREFIX}/transactions", transactions, methods=["GET", "POST"]),
    ]
    # Every refusal of bad input here is a ValueError (ControlInputError, SimNetConfigError,
    # CursorError, an unknown FaultKind) or a TypeError from a field of the wrong type.
    handlers = {ValueError: _bad_input, TypeError: _bad_input}
    return Starlette(routes=routes, exception_handlers=handlers)


async def _bad_input(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=400)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise ControlInputError(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ControlInputError("body must be a JSON object")
    return body


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ControlInputError(f"{name} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ControlInputError(f"{name} must be an integer, got {value!r}") from None


def _range(request: Request, net: SimNetwork) -> tuple[int, int]:
    first = _int(request.query_params.get("from", net.first_ledger), "from")
    last = _int(request.query_params.get("to", net.latest_ledger), "to")
    return first, last


def _fault_args(body: dict[str, Any]) -> dict[str, Any]:
    """FaultBook.add keyword arguments from a JSON body (camelCase keys)."""
    if "kind" not in body:
        raise ControlInputError("a fault needs a kind")
    names = {"kind", "method", "times", "match", "code", "message", "delay", "retryAfter", "body"}
    names.add("forSecs")
    unknown = set(body) - names
    if unknown:
        raise ControlInputError(f"unknown fault fields: {sorted(unknown)}")
    renamed = {"retryAfter": "retry_after", "forSecs": "for_secs"}
    args = {renamed.get(key, key): value for key, value in body.items()}
    if args.get("match") is not None and not isinstance(args["match"], dict):
        raise ControlInputError("match must be an object of params the request must contain")
    return args


def _tamper(net: SimNetwork, body: dict[str, Any]) -> dict[str, Any]:
    kind = body.get("kind")
    if kind in ("drop_event", "alter_event"):
        event_id = body.get("eventId")
        if not isinstance(event_id, str):
            ledger = _int(body.get("ledger"), "ledger")
            event_id = net.event_id_at(ledger, _int(body.get("index", 0), "index"))
        if kind == "drop_event":
            return {"kind": kind, "eventId": net.drop_event(event_id)}
        value = body.get("value")
        if value is not None and not isinstance(value, str):
            raise ControlInputError("value must be a base64 ScVal")
        return {"kind": kind, "eventId": net.alter_event(event_id, value)}
    if kind == "break_chain":
        ledger = _int(body.get("ledger"), "ledger")
        net.break_chain_at(ledger)
        return {"kind": kind, "ledger": ledger, "hash": net.ledger_hash(ledger)}
    if kind == "retention":
        window = _int(body.get("window"), "window")
        net.set_retention_window(window)
        return {"kind": kind, "window": window, "oldestLedger": net.oldest_ledger}
    raise ControlInputError("kind must be drop_event, alter_event, break_chain or retention")


def _declare(net: SimNetwork, body: dict[str, Any]) -> dict[str, Any]:
    tx_hash = body.get("hash")
    if not isinstance(tx_hash, str) or len(tx_hash) != 64 or not _is_hex(tx_hash):
        raise ControlInputError("hash must be 64 hexadecimal characters")
    outcome = body.get("outcome")
    if outcome == "failed":
        ledger = body.get("ledger")
        net.transactions.fail(tx_hash, _int(ledger, "ledger") if ledger is not None else None)
    elif outcome == "not_found":
        net.transactions.forget(tx_hash)
    else:
        raise ControlInputError("outcome must be failed or not_found")
    return {"hash": tx_hash.lower(), "outcome": outcome}


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True
