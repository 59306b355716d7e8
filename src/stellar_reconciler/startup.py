"""Start-up: what the service checks before it writes anything, and waiting for the database.

The order is the contract. The listening socket is bound first (a port in use is one line, not
a traceback, and nothing is written); then the database is migrated and the configured filters
compared with the ones it was filled with (before the RPC is reached or the HTTP server
started); then the RPC's network passphrase is recorded, or refused when the database holds
another network's data. Only then does the worker start. A database that cannot be reached at
the first attempt is waited out with back-off while the HTTP server answers /health with 503
naming it; the filter and network checks run as soon as it is reachable, still before the
worker starts.
"""

from __future__ import annotations

import asyncio
import errno
import socket

import structlog

from stellar_reconciler.config import Settings, redact_url
from stellar_reconciler.errors import AddressInUseError, DatabaseUnavailableError, RpcError
from stellar_reconciler.rpc import StellarRpc
from stellar_reconciler.status import ServiceStatus
from stellar_reconciler.store import Store
from stellar_reconciler.store.migrate import current_revision
from stellar_reconciler.worker import WorkerOptions

log = structlog.get_logger("stellar_reconciler.startup")

# getNetwork at start-up gets this long; an RPC that is down then is checked by the worker
# before its first batch instead (the HTTP server should not wait on the RPC to come up).
NETWORK_CHECK_SECS = 5.0
DATABASE_FIRST_RETRY_SECS = 0.5
DATABASE_MAX_RETRY_SECS = 10.0


def open_listener(host: str, port: int, advice: str = "choose another BIND_ADDR") -> socket.socket:
    """A bound, listening TCP socket for the HTTP server; AddressInUseError with `advice`
    (which differs between `run` and `demo`) when it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio turns Nagle off only on sockets whose proto says TCP,
    # and with Nagle on every small HTTP answer waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # Like uvicorn: a restarted service may rebind while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        detail = (
            "the port is in use by another process"
            if exc.errno == errno.EADDRINUSE
            else f"not an address of this machine: {exc.strerror}"
        )
        raise AddressInUseError(f"{host}:{port}", advice, detail) from None
    sock.setblocking(False)
    return sock


class StartUp:
    """The start-up checks of one service, in the order the module docstring gives."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        rpc: StellarRpc,
        status: ServiceStatus,
        fingerprint: str,
    ) -> None:
        self.settings = settings
        self.store = store
        self.rpc = rpc
        self.status = status
        self.fingerprint = fingerprint

    def prepare_database(self) -> None:
        """Migrate, then refuse changed filters (StreamMismatchError) before anything else."""
        self.store.migrate()
        self.store.check_stream(self.fingerprint)

    async def database_ready(self) -> bool:
        """One attempt at `prepare_database`; False when the database cannot be reached."""
        try:
            await asyncio.to_thread(self.prepare_database)
        except DatabaseUnavailableError as exc:
            self.status.block(str(exc), {"kind": "database_unavailable"})
            log.error("database_unavailable", error=str(exc))
            return False
        return True

    async def wait_for_database(self, stop: asyncio.Event) -> bool:
        """Retry `prepare_database` with growing pauses until it works (True) or `stop` is set
        (False); /health stays 503 naming the database meanwhile."""
        pause = DATABASE_FIRST_RETRY_SECS
        while True:
            try:
                await asyncio.wait_for(stop.wait(), timeout=pause)
            except TimeoutError:
                pass
            else:
                return False
            try:
                await asyncio.to_thread(self.prepare_database)
            except DatabaseUnavailableError as exc:
                self.status.block(str(exc), {"kind": "database_unavailable"})
                log.info("database_still_unavailable", retry_in=pause)
                pause = min(pause * 2, DATABASE_MAX_RETRY_SECS)
                continue
            self.status.unblock()
            log.info("database_available")
            return True

    async def check_network(self) -> None:
        """Record the RPC's network passphrase, or raise NetworkMismatchError when the
        database holds another network's data. An RPC that does not answer is not waited for."""
        try:
            info = await asyncio.wait_for(self.rpc.get_network(), NETWORK_CHECK_SECS)
        except (RpcError, TimeoutError) as exc:
            log.warning("network_check_deferred", error=str(exc) or "timed out")
            return
        await asyncio.to_thread(
            self.store.network.record, info.passphrase, redact_url(self.settings.stellar_rpc_url)
        )
        self.status.record_network(info)


def migrate_database(settings: Settings) -> str | None:
    """`reconciler migrate`: refuse changed filters first (as start-up does), then migrate;
    returns the schema revision reached."""
    store = Store.open(settings.sqlalchemy_url)
    try:
        if current_revision(store.engine) is not None:
            store.check_stream(WorkerOptions.from_settings(settings).fingerprint)
        store.migrate()
        return current_revision(store.engine)
    finally:
        store.close()
