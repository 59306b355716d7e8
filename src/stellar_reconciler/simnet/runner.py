"""Running the simulated network: uvicorn plus a ledger clock, in a task or a background thread.

`run_simnet` is the async entry point (the CLI and services await it); `serve_in_thread` wraps
it for synchronous tests: a real uvicorn on loopback in a daemon thread, yielding its URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import structlog
import uvicorn

from stellar_reconciler.simnet.network import SimNetwork
from stellar_reconciler.simnet.server import SimnetApp

log = structlog.get_logger("stellar_reconciler.simnet")

STARTUP_TIMEOUT = 30.0
# Requests still running at shutdown (say, under a `slow` fault) get this long to finish.
GRACEFUL_SHUTDOWN_SECONDS = 2


class _Server(uvicorn.Server):
    """uvicorn.Server that reports when it is listening."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_ready()

    def bound_url(self) -> str:
        sockets = [s for server in self.servers for s in (server.sockets or ())]
        host, port = sockets[0].getsockname()[:2]
        return url_for(host, port)


def url_for(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # An explicit IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections; without
    # it every answer waits ~40 ms for a delayed ACK (headers and body are separate writes).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(512)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def run_simnet(
    net: SimNetwork,
    host: str = "127.0.0.1",
    port: int = 8000,
    stop_event: asyncio.Event | None = None,
    *,
    sock: socket.socket | None = None,
    log_level: str = "info",
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve `net` over HTTP until `stop_event` is set (or uvicorn is told to stop by a signal),
    closing a ledger every `net.config.ledger_interval` seconds unless in manual mode.

    Pass `sock` to serve on an already bound socket (then host and port are ignored);
    `on_ready` is called with the base URL once the server accepts connections.
    """
    config = uvicorn.Config(
        SimnetApp(net),
        host=host,
        port=port,
        log_level=log_level,
        access_log=log_level == "debug",
        http="h11",
        ws="none",
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )

    def ready() -> None:
        url = server.bound_url()
        log.info("simnet_listening", url=url, latest_ledger=net.latest_ledger)
        if on_ready is not None:
            on_ready(url)

    server = _Server(config, ready)
    serving = asyncio.create_task(server.serve(sockets=[sock] if sock is not None else None))
    waiters: set[asyncio.Task[Any]] = {serving}
    stopper = asyncio.create_task(stop_event.wait()) if stop_event is not None else None
    if stopper is not None:
        waiters.add(stopper)
    clock = asyncio.create_task(_ledger_clock(net)) if not net.config.manual else None
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        for task in (stopper, clock):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await serving


async def _ledger_clock(net: SimNetwork) -> None:
    interval = net.config.ledger_interval or 0.0
    loop = asyncio.get_running_loop()
    next_close = loop.time() + interval
    while True:
        await asyncio.sleep(max(0.0, next_close - loop.time()))
        # Scheduled from the planned time, not from now, so ledgers do not drift late.
        next_close += interval
        await asyncio.to_thread(net.close_ledger)


class _Loop:
    """The server thread's event loop and stop event, handed back to the caller's thread."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.failure: BaseException | None = None

    def request_stop(self) -> None:
        if self.loop is not None and self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)


@contextlib.contextmanager
def serve_in_thread(
    net: SimNetwork, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning"
) -> Iterator[str]:
    """Serve `net` from a background thread; yields the base URL (e.g. http://127.0.0.1:54321/).

    The socket is bound here, so a busy port fails at once in the caller's thread. Leaving
    the block stops the server and joins the thread.
    """
    sock = bind(host, port)
    handle = _Loop()

    async def main() -> None:
        handle.loop = asyncio.get_running_loop()
        handle.stop = asyncio.Event()
        await run_simnet(
            net,
            stop_event=handle.stop,
            sock=sock,
            log_level=log_level,
            on_ready=lambda _url: handle.ready.set(),
        )

    def target() -> None:
        try:
            asyncio.run(main())
        except (OSError, SystemExit) as exc:
            # uvicorn exits on startup failures; hand the reason to the caller's thread.
            handle.failure = exc
            handle.ready.set()

    thread = threading.Thread(target=target, name="simnet-server", daemon=True)
    thread.start()
    if not handle.ready.wait(STARTUP_TIMEOUT) or handle.failure is not None:
        handle.request_stop()
        sock.close()
        raise RuntimeError(f"the simulated network did not start: {handle.failure!r}")
    bound_host, bound_port = sock.getsockname()[:2]
    try:
        yield url_for(bound_host, bound_port)
    finally:
        handle.request_stop()
        thread.join(STARTUP_TIMEOUT)
        sock.close()
