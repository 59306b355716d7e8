"""Service: the graph wiring.py builds, the worker and the HTTP server run in one TaskGroup.

One stop event ends everything: the worker cancels the RPC calls in flight, lets a batch
already handed to the database commit (or roll back) whole, and returns; the HTTP server
closes. SIGINT and SIGTERM set that event, and the process is gone within STOP_DEADLINE_SECS
whatever the RPC or the database is doing (see stopping.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import structlog
import uvicorn
from fastapi import FastAPI

from stellar_reconciler.api.event_stream import close_event_streams
from stellar_reconciler.api.live import close_streams
from stellar_reconciler.collector import tune_garbage_collector
from stellar_reconciler.config import Settings, redact_url
from stellar_reconciler.control import Controls
from stellar_reconciler.errors import ReconcilerError, ServiceError
from stellar_reconciler.leadership import Leadership
from stellar_reconciler.maintenance import Maintenance
from stellar_reconciler.metrics import Metrics
from stellar_reconciler.publish_child import PublishStart
from stellar_reconciler.publish_process import PublishProcess
from stellar_reconciler.publisher import NatsPublisher
from stellar_reconciler.rpc import StellarRpc
from stellar_reconciler.startup import StartUp, open_listener
from stellar_reconciler.status import ServiceStatus
from stellar_reconciler.stopping import TASKS_GRACE_SECS, StopDeadline, install_signal_handlers
from stellar_reconciler.store import FileLease, Store
from stellar_reconciler.telemetry import Telemetry
from stellar_reconciler.webhook import WebhookSender
from stellar_reconciler.wiring import Hooks, WorkerFactory, standard_hooks, wire
from stellar_reconciler.worker import Worker

log = structlog.get_logger("stellar_reconciler.service")


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers (the service's stop event decides), telling
    when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.listening.set()


@dataclass
class Service:
    settings: Settings
    store: Store
    status: ServiceStatus
    metrics: Metrics
    controls: Controls
    rpc: StellarRpc
    # Makes the first worker, and a fresh one after a restart or for a new term as leader.
    workers: WorkerFactory
    worker: Worker
    maintenance: Maintenance
    telemetry: Telemetry
    app: FastAPI
    server: _QuietServer
    # Who may write: leader and standbys on PostgreSQL, one process per file on SQLite.
    leadership: Leadership | None
    file_lease: FileLease | None
    # Bound before anything else at start-up (or handed over by `demo`, which words its own
    # advice); the HTTP server serves on it.
    listener: socket.socket | None = None

    @classmethod
    def build(cls, settings: Settings, hooks: Hooks = standard_hooks) -> Service:
        """The service `wire` builds, not yet running (`hooks`: see wiring.Hooks)."""
        graph = wire(settings, hooks)
        core = graph.core
        config = uvicorn.Config(
            graph.app,
            host=settings.bind_host,
            port=settings.bind_port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        return cls(
            settings=settings,
            store=core.store,
            status=core.status,
            metrics=core.metrics,
            controls=graph.controls,
            rpc=core.rpc,
            workers=graph.workers,
            worker=graph.workers(),
            maintenance=graph.maintenance,
            telemetry=graph.telemetry,
            app=graph.app,
            server=_QuietServer(config),
            leadership=graph.leadership,
            file_lease=graph.file_lease,
        )

    def worker_kill_fetch_process(self) -> None:
        self.worker.kill_fetch_process()

    def bound_port(self) -> int | None:
        """The port the HTTP server listens on (useful with BIND_ADDR port 0)."""
        if not self.server.started:
            return None
        for server in getattr(self.server, "servers", ()):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Start up (see startup.py for the order), then run the worker and the HTTP server
        until `stop` is set. A refusal at start-up raises before anything is written. After
        `stop`, tasks get TASKS_GRACE_SECS to end on their own before they are cancelled."""
        startup = StartUp(
            self.settings,
            self.store,
            self.rpc,
            self.status,
            self.workers.options.fingerprint,
        )
        refused: list[BaseException] = []
        try:
            if self.listener is None:
                self.listener = open_listener(self.settings.bind_host, self.settings.bind_port)
            if self.file_lease is not None:
                self.file_lease.acquire()
            database_ready = await startup.database_ready()
            if database_ready:
                await startup.check_network()
        except BaseException:
            # Refused before starting: the error is the one line the operator needs.
            await self._close()
            raise
        log.info(
            "service_starting",
            bind=self.settings.bind_addr,
            rpc=redact_url(self.settings.stellar_rpc_url),
            database=self.store.dialect,
        )
        tasks = asyncio.create_task(self._run_tasks(stop, startup, database_ready, refused))
        try:
            await _first_of_task(tasks, stop)
            if not tasks.done():
                await asyncio.wait({tasks}, timeout=TASKS_GRACE_SECS)
            if not tasks.done():
                log.error(
                    "stop_cancelling_tasks",
                    waited_secs=TASKS_GRACE_SECS,
                    waiting_for=self.waiting_for(),
                )
                tasks.cancel()
                await asyncio.wait({tasks}, timeout=1.0)
            if tasks.done() and not tasks.cancelled():
                tasks.result()
        finally:
            if not tasks.done():
                tasks.cancel()
            await self._close()
            log.info("service_stopped", checkpoint=self.status.last_processed_ledger)
        if refused:
            raise refused[0]

    async def _close(self) -> None:
        await self.rpc.aclose()
        self.store.close()
        if self.file_lease is not None:
            self.file_lease.release()
        if self.listener is not None:
            self.listener.close()

    async def _start_when_ready(
        self,
        group: asyncio.TaskGroup,
        stop: asyncio.Event,
        startup: StartUp,
        refused: list[BaseException],
    ) -> None:
        """Wait out a database that is down at start-up, finish the start-up checks, then
        start the rest; a refusal found then stops the service with it."""
        try:
            if not await startup.wait_for_database(stop):
                return
            await startup.check_network()
        except ReconcilerError as exc:
            refused.append(exc)
            stop.set()
            return
        await self._start_tasks(group, stop, refused)

    async def _start_tasks(
        self, group: asyncio.TaskGroup, stop: asyncio.Event, refused: list[BaseException]
    ) -> None:
        group.create_task(self.telemetry.run(stop))
        if self.leadership is None:
            group.create_task(self._lead(stop))
        else:
            won = await self.leadership.first_try()
            group.create_task(self.leadership.run(stop, self._lead, won=won))

    async def _lead(self, stop: asyncio.Event) -> None:
        """What only the leader runs: the worker, maintenance, webhooks and publishing; a
        fresh worker each time this replica comes to lead again."""
        if self.worker.ran:
            # The last worker may have halted on the fence (NotLeaderError) as the lock went.
            self._replace_worker()
        async with asyncio.TaskGroup() as group:
            self._start_leader_tasks(group, stop)

    def _start_leader_tasks(self, group: asyncio.TaskGroup, stop: asyncio.Event) -> None:
        group.create_task(self._supervise_worker(stop))
        group.create_task(self.maintenance.run(stop))
        if self.settings.webhook_urls:
            sender = WebhookSender(
                self.store,
                self.settings.webhook_urls,
                self.settings.webhook_secret,
                self.settings.service_name,
            )
            group.create_task(sender.run(stop))
        if self.settings.nats_url:
            group.create_task(self._publisher().run(stop))

    def _publisher(self) -> NatsPublisher | PublishProcess:
        """The publisher in a process of its own (a core and an interpreter lock of its own,
        see publish_child.py), unless the database lives in this process's memory."""
        if self.store.in_memory:
            return NatsPublisher.from_settings(self.settings, self.store, self.status)
        start = PublishStart.from_settings(
            self.settings, self.store.stream, self.store.application_name
        )
        return PublishProcess(start, self.status)

    async def _run_tasks(
        self,
        stop: asyncio.Event,
        startup: StartUp,
        database_ready: bool,
        refused: list[BaseException],
    ) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._serve_http(stop))
            if database_ready:
                await self._start_tasks(group, stop, refused)
            else:
                group.create_task(self._start_when_ready(group, stop, startup, refused))

    def waiting_for(self) -> str:
        """What a stop is still waiting for, in words, for the log."""
        if self.worker.committing:
            return "a batch commit in the database"
        calls = self.rpc.pending()
        if calls:
            return ", ".join(f"{method} from {url}" for method, url, _ in calls)
        return "a database call or a background task"

    async def _supervise_worker(self, stop: asyncio.Event) -> None:
        """Run the worker; start a fresh one when an operator asks for a restart (also after
        it halted on a fault), while the HTTP server stays up."""
        restart = self.controls.restart_requested
        while not stop.is_set():
            worker_stop = asyncio.Event()
            relay = asyncio.create_task(_first_of(stop, restart, then=worker_stop))
            try:
                await self.worker.run(worker_stop)
            finally:
                relay.cancel()
            if stop.is_set():
                return
            if not restart.is_set():
                # It halted on its own; wait for an operator's restart (or shutdown).
                await _first_of(stop, restart)
                if stop.is_set():
                    return
            restart.clear()
            self._replace_worker()
            log.info("worker_restarted")

    def _replace_worker(self) -> None:
        """A fresh worker, and the old one's halt forgotten."""
        self.status.unblock()
        self.status.forget_poll_failure()
        self.worker = self.workers()

    async def _serve_http(self, stop: asyncio.Event) -> None:
        serving = asyncio.create_task(self._serve_or_raise())
        waiting = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if serving in done:
            waiting.cancel()
            # The HTTP server ending on its own (say, the port is taken) ends the service.
            stop.set()
            serving.result()
            return
        # Open dashboards hold their event streams; end them, or shutdown waits them out.
        close_streams(self.app)
        close_event_streams(self.app)
        self.server.should_exit = True
        await serving

    async def _serve_or_raise(self) -> None:
        announce = asyncio.create_task(self._announce())
        try:
            await self.server.serve([self.listener] if self.listener is not None else None)
        except SystemExit as exc:
            # uvicorn exits the process when it cannot bind; turn that into an error we own.
            raise ServiceError(
                f"cannot listen on BIND_ADDR={self.settings.bind_addr} (in use, or not an "
                "address of this machine); choose another BIND_ADDR"
            ) from exc
        finally:
            announce.cancel()

    async def _announce(self) -> None:
        await self.server.listening.wait()
        log.info("http_listening", url=f"http://{self.settings.bind_host}:{self.bound_port()}/")


async def _first_of_task(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """Wait until `task` ends or `stop` is set."""
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()


async def _first_of(*events: asyncio.Event, then: asyncio.Event | None = None) -> None:
    """Wait until any of `events` is set; then set `then`."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    if then is not None:
        then.set()


async def run_service(settings: Settings) -> None:
    stop = asyncio.Event()
    service = Service.build(settings)
    deadline = StopDeadline(service.waiting_for, service.worker_kill_fetch_process)
    install_signal_handlers(stop, deadline)
    tune_garbage_collector()
    await service.run(stop)
    if service.worker.committing:
        # A commit stuck in its thread would hold the interpreter's exit until the deadline.
        deadline.expire()
