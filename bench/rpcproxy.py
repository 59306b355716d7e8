"""A loopback JSON-RPC proxy in front of the simulated network that misbehaves like real
infrastructure does: a load balancer that switches to a node behind the head, or a node that
serves a range of events a second time.

The simulated network's own fault rules (`/_simnet/faults`) cover transport and JSON-RPC
errors; these two need to change a correct answer, which only something in the middle can.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.procstat import free_port

# Fields that carry the node's idea of the head, per method's result.
_HEAD_FIELDS = ("latestLedger",)


class RpcProxy:
    """Forwards every request to `upstream`; `head_behind` and `replay_events` bend answers."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        # Ledgers to take off every head the node reports (0: answer as the node does).
        self.head_behind = 0
        # When set, every event of a getEvents answer comes twice (an overlapping page).
        self.replay_events = False
        self.bent_answers = 0

    def app(self) -> Starlette:
        client = httpx.AsyncClient(timeout=120)

        async def forward(request: Request) -> Response:
            body = await request.body()
            try:
                upstream = await client.post(
                    self.upstream, content=body, headers={"content-type": "application/json"}
                )
            except httpx.TransportError:
                return Response(status_code=502)
            content = upstream.content
            if upstream.status_code == 200 and (self.head_behind or self.replay_events):
                content = self._bend(body, content)
            return Response(content, upstream.status_code, media_type="application/json")

        return Starlette(routes=[Route("/", forward, methods=["POST"])])

    def _bend(self, request_body: bytes, content: bytes) -> bytes:
        try:
            method = json.loads(request_body).get("method")
            answer = json.loads(content)
        except ValueError:
            return content
        result = answer.get("result") if isinstance(answer, dict) else None
        if not isinstance(result, dict):
            return content
        if self.head_behind:
            for name in _HEAD_FIELDS:
                if isinstance(result.get(name), int):
                    result[name] -= self.head_behind
                    self.bent_answers += 1
        if self.replay_events and method == "getEvents":
            result["events"] = [event for event in result.get("events") or [] for _ in "ab"]
            self.bent_answers += 1
        return json.dumps(answer).encode()


@contextlib.contextmanager
def running_proxy(upstream: str) -> Iterator[tuple[RpcProxy, str]]:
    """The proxy on a free loopback port, in a daemon thread; yields it and its URL."""
    proxy = RpcProxy(upstream)
    port = free_port()
    config = uvicorn.Config(proxy.app(), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the RPC proxy did not start within 30 s")
        time.sleep(0.05)
    try:
        yield proxy, f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(10)
