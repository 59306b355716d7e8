"""The HTTP edge: what happens to a request before FastAPI reads it.

FastAPI reads and parses a body before it runs any dependency, so a token check written as a
dependency comes too late to stop a huge body from an unauthenticated client. This ASGI
middleware finds the route first and then, in order:

1. refuses a request to an admin route that lacks ADMIN_TOKEN (401/403) without reading
   its body;
2. reads the body itself, stopping with a 413 as soon as it passes the route's cap, whether
   the client declared a Content-Length or streams chunks, and hands the route the bytes;
3. answers 405 with every method the path takes in `Allow`;
4. answers HEAD on the probe paths as a GET without a body (load balancers probe with HEAD);
5. adds `X-Content-Type-Options: nosniff` to every answer.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stellar_reconciler.api.auth import admin_refusal, require_admin
from stellar_reconciler.api.context import ApiContext
from stellar_reconciler.api.errors import ApiError, error_response

KIB = 1024
DEFAULT_BODY_LIMIT = 64 * KIB
# A route may raise its cap with openapi_extra={BODY_LIMIT_KEY: bytes}; the number is then
# also in the OpenAPI document, where a client can read it.
BODY_LIMIT_KEY = "x-max-body-bytes"
# Paths that monitors and load balancers probe: HEAD there is a GET without the body.
HEAD_PATHS = frozenset({"/", "/health", "/metrics"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def depends_on(dependant: Any, call: Any) -> bool:
    return any(d.call is call or depends_on(d, call) for d in dependant.dependencies)


def needs_admin(route: APIRoute) -> bool:
    """Whether the route takes the admin token (it depends on require_admin)."""
    return depends_on(route.dependant, require_admin)


def body_limit(route: APIRoute | None) -> int:
    extra = (route.openapi_extra or {}) if route is not None else {}
    limit = extra.get(BODY_LIMIT_KEY, DEFAULT_BODY_LIMIT)
    return int(limit)


def matching_route(routes: list[APIRoute], scope: Scope) -> APIRoute | None:
    """The API route that will serve this request (path and method), if any."""
    for route in routes:
        if route.matches(scope)[0] == Match.FULL:
            return route
    return None


def allowed_methods(routes: list[APIRoute], scope: Scope) -> list[str]:
    """Every method some route answers on this path, for a 405's `Allow` header (Starlette
    names only the first route that matched the path)."""
    methods: set[str] = set()
    for route in routes:
        if route.matches(scope)[0] != Match.NONE:
            methods |= route.methods or set()
    if scope.get("path") in HEAD_PATHS and "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


async def read_capped(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it passes `limit` bytes (the rest is
    never read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            # The client went away: the route would see the same disconnect.
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"the request body is larger than this endpoint accepts ({limit:,} bytes); "
        "send less (split a list into several requests)",
        [{"loc": ["body"], "msg": f"at most {limit} bytes", "type": "too_large"}],
    )


def _declared_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, *, routes: list[APIRoute], ctx: ApiContext) -> None:
        self.app = app
        self.routes = routes
        self.ctx = ctx
        self.admin_routes = {id(route) for route in routes if needs_admin(route)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD" and scope["path"] in HEAD_PATHS
        if head:
            scope = {**scope, "method": "GET"}
        send = _edge_send(send, strip_body=head)
        route = matching_route(self.routes, scope)
        headers = Headers(scope=scope)
        if route is None and (methods := allowed_methods(self.routes, scope)):
            allow = ", ".join(methods)
            refusal = ApiError(405, f"{scope['method']} is not allowed here; use {allow}")
            refusal.headers = {"Allow": allow}
            await error_response(refusal)(scope, receive, send)
            return
        if route is not None and id(route) in self.admin_routes:
            denial = admin_refusal(self.ctx, headers)
            if denial is not None:
                await error_response(denial)(scope, receive, send)
                return
        if scope["method"] in _BODY_METHODS:
            limit = body_limit(route)
            declared = _declared_length(headers)
            too_large = declared is not None and declared > limit
            body = None if too_large else await read_capped(receive, limit)
            if body is None:
                response = error_response(_too_large(limit))
                # The rest of the body is never read: the connection cannot be reused.
                response.headers["connection"] = "close"
                await response(scope, receive, send)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


def _edge_send(send: Send, *, strip_body: bool) -> Send:
    async def edge_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            headers.append((b"x-content-type-options", b"nosniff"))
            message = {**message, "headers": headers}
        elif message["type"] == "http.response.body" and strip_body:
            message = {**message, "body": b""}
        await send(message)

    return edge_send
