"""JSON-RPC 2.0 envelopes as stellar-rpc (creachadair/jrpc2 behind an HTTP bridge) reads them.

A body holds one request object or a batch (array) of them. Each request is checked the way
jrpc2 checks it: a `"jsonrpc": "2.0"` marker, an id that is a string, number or null, a string
method, params that are an object or array, no other keys. A request without an id is a
notification and gets no answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

_ALLOWED_KEYS = frozenset({"jsonrpc", "id", "method", "params"})


class RpcError(Exception):
    """A JSON-RPC error answer: code, message and optional data, as the server sends them."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> str:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return json.dumps(error, separators=(",", ":"))


def invalid_params(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, message)


def invalid_request(message: str) -> RpcError:
    return RpcError(INVALID_REQUEST, message)


@dataclass(frozen=True, slots=True)
class Call:
    """One request of a body. `id_json` is the id re-serialised, None for a notification."""

    id_json: str | None
    method: str
    params: Any
    error: RpcError | None = None

    @property
    def notification(self) -> bool:
        return self.id_json is None and self.error is None


def parse_body(body: bytes) -> list[Call]:
    """The calls in an HTTP body (one, or a batch); RpcError(-32700) if it is not JSON."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise RpcError(PARSE_ERROR, "invalid request value") from None
    if isinstance(document, list):
        if not document:
            raise RpcError(INVALID_REQUEST, "empty request batch")
        return [_parse_call(item) for item in document]
    return [_parse_call(document)]


def result_message(id_json: str | None, result_json: str) -> str:
    return f'{{"jsonrpc":"2.0","id":{id_json or "null"},"result":{result_json}}}'


def error_message(id_json: str | None, error: RpcError) -> str:
    return f'{{"jsonrpc":"2.0","id":{id_json or "null"},"error":{error.to_json()}}}'


def _parse_call(item: Any) -> Call:
    if not isinstance(item, dict):
        return Call(None, "", None, RpcError(PARSE_ERROR, "request is not a JSON object"))
    problems: list[RpcError] = []
    id_json: str | None = None
    raw_id = item.get("id")
    if raw_id is not None:
        if isinstance(raw_id, str | int | float) and not isinstance(raw_id, bool):
            id_json = json.dumps(raw_id)
        else:
            problems.append(invalid_request("invalid request ID"))
    version = item.get("jsonrpc")
    if "jsonrpc" in item and not isinstance(version, str):
        problems.append(RpcError(PARSE_ERROR, "invalid version key"))
    method = item.get("method", "")
    if not isinstance(method, str):
        problems.append(RpcError(PARSE_ERROR, "invalid method name"))
        method = ""
    params = item.get("params")
    if params is not None and not isinstance(params, dict | list):
        problems.append(invalid_request("parameters must be array or object"))
    if version != "2.0":
        problems.append(invalid_request("invalid version marker"))
    if method and ("result" in item or "error" in item):
        problems.append(invalid_request("mixed request and reply fields"))
    extra = sorted(set(item) - _ALLOWED_KEYS - {"result", "error"})
    if extra:
        problems.append(RpcError(INVALID_REQUEST, "extra fields in request", extra))
    if not problems and not method:
        problems.append(invalid_request("empty method name"))
    return Call(id_json, method, params, problems[0] if problems else None)
