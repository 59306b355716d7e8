"""SimnetApp: the simulated node's HTTP face, an ASGI app for uvicorn.

JSON-RPC is answered at `POST /` as stellar-rpc answers it (POST only, Content-Type
application/json, bodies up to 512 KiB, batches allowed). The control endpoints live under
`/_simnet/` (control.py). The JSON-RPC root is a bare ASGI callable rather than a framework
route because several faults must act below any framework: closing the TCP connection
without a response, or sending a truncated body.
"""

from __future__ import annotations

import asyncio
import logging
from email.message import Message
from typing import Any

from starlette.types import Receive, Scope, Send

from stellar_reconciler.simnet import methods
from stellar_reconciler.simnet.control import CONTROL_PREFIX, control_app
from stellar_reconciler.simnet.faults import HTTP_STATUS, FaultKind, FaultRule
from stellar_reconciler.simnet.jsonrpc import (
    Call,
    RpcError,
    error_message,
    parse_body,
    result_message,
)
from stellar_reconciler.simnet.network import SimNetwork

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 512 * 1024  # stellar-rpc's maxHTTPRequestSize
JSON_HEADERS = [(b"content-type", b"application/json")]
BAD_GATEWAY_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center></body></html>"
)
# A result of the wrong shape: an array where every method returns an object.
WRONG_SHAPE_RESULT = '["unexpected"]'


class SimnetApp:
    def __init__(self, net: SimNetwork) -> None:
        self.net = net
        self.control = control_app(net)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            await self.control(scope, receive, send)
            return
        if path != "/":
            await _respond(send, 404, b"404 page not found\n", [(b"content-type", b"text/plain")])
            return
        if scope["method"] != "POST":
            await _respond(send, 405, b"", [(b"accept-post", b"application/json")])
            return
        if not _is_json(scope):
            await _respond(send, 415, b"content-type must be application/json\n")
            return
        body = await _read_body(receive)
        if body is None:
            await _respond(send, 413, b"http: request body too large\n")
            return
        await self._rpc(body, receive, send)

    async def _rpc(self, body: bytes, receive: Receive, send: Send) -> None:
        try:
            calls = parse_body(body)
        except RpcError as exc:
            await _respond(send, 200, error_message(None, exc).encode(), JSON_HEADERS)
            return
        fault, faulted = self._fault_for(calls)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if await _answer_for_transport(fault, receive, send):
                return
        answers: list[str] = []
        for call in calls:
            answer = await self._answer(call, fault if call is faulted else None)
            if answer is not None:
                answers.append(answer)
        if not answers:
            await _respond(send, 204, b"")
            return
        # jrpc2's bridge answers a batch that yields one response with a bare object.
        text = answers[0] if len(answers) == 1 else "[" + ",".join(answers) + "]"
        if fault is not None and fault.kind is FaultKind.TRUNCATED:
            text = text[: len(text) // 2]
        await _respond(send, 200, text.encode(), JSON_HEADERS)

    def _fault_for(self, calls: list[Call]) -> tuple[FaultRule | None, Call | None]:
        """Count the calls and find the first fault rule one of them triggers."""
        rule: FaultRule | None = None
        faulted: Call | None = None
        for call in calls:
            if call.error is not None:
                continue
            self.net.count_request(call.method)
            if rule is None:
                rule = self.net.faults.take(call.method, call.params)
                faulted = call if rule is not None else None
        return rule, faulted

    async def _answer(self, call: Call, fault: FaultRule | None) -> str | None:
        if call.error is not None:
            return error_message(call.id_json, call.error)
        if fault is not None and fault.kind is FaultKind.RPC_ERROR:
            error = RpcError(fault.code, fault.error_message(call.method))
            return None if call.notification else error_message(call.id_json, error)
        try:
            # Off the event loop: a 10,000-event page is CPU work and other requests
            # (a slow fault, the control API) should not wait behind it.
            result = await asyncio.to_thread(methods.call, self.net, call.method, call.params)
        except RpcError as exc:
            return None if call.notification else error_message(call.id_json, exc)
        if call.notification:
            return None
        if fault is not None and fault.kind is FaultKind.WRONG_SHAPE:
            result = fault.body or WRONG_SHAPE_RESULT
        return result_message(call.id_json, result)


async def _answer_for_transport(fault: FaultRule, receive: Receive, send: Send) -> bool:
    """Answer faults that replace the whole HTTP response; False when the call goes on."""
    status = HTTP_STATUS.get(fault.kind)
    if status is not None:
        headers: list[tuple[bytes, bytes]] = []
        if fault.kind is FaultKind.HTTP_429 and fault.retry_after is not None:
            headers.append((b"retry-after", fault.retry_after.encode()))
        default = {502: BAD_GATEWAY_PAGE, 429: "Too Many Requests\n"}.get(status, "")
        body = fault.body if fault.body is not None else default
        if body:
            headers.append((b"content-type", b"text/html" if status == 502 else b"text/plain"))
        await _respond(send, status, body.encode(), headers)
        return True
    if fault.kind is FaultKind.NON_JSON:
        page = fault.body if fault.body is not None else BAD_GATEWAY_PAGE
        await _respond(send, 200, page.encode(), [(b"content-type", b"text/html")])
        return True
    if fault.kind is FaultKind.EMPTY:
        await _respond(send, 200, b"", JSON_HEADERS)
        return True
    if fault.kind is FaultKind.DROP:
        await _drop_connection(receive, send)
        return True
    return False


async def _drop_connection(receive: Receive, send: Send) -> None:
    """Close the TCP connection without writing a response.

    ASGI has no message for this, so the transport is taken from uvicorn's bound `send`.
    Waiting for the disconnect to be seen keeps uvicorn from trying to answer after us.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if isinstance(transport, asyncio.BaseTransport):
        transport.close()
        while (await receive())["type"] != "http.disconnect":
            pass
        return
    # Another server: promise a body and end without it, so the connection is closed.
    log.warning("simnet_drop_fallback")
    headers = [(b"content-length", b"64")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    all_headers = [*(headers or []), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or None when it exceeds MAX_BODY_BYTES."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _is_json(scope: Scope) -> bool:
    """Content-Type application/json, charset (if any) utf-8, as jrpc2's bridge insists."""
    raw = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
    parsed = Message()
    parsed["content-type"] = raw
    if parsed.get_content_type() != "application/json" or not raw.strip():
        return False
    charset = parsed.get_param("charset")
    return charset is None or str(charset).lower() in ("utf-8", "utf8")


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message: dict[str, Any] = dict(await receive())
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
