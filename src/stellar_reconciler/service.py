"""Service: wires settings into the worker and the HTTP server and runs them in one TaskGroup.

One stop event ends everything: the worker cancels the RPC calls in flight, lets a batch
already handed to the database commit (or roll back) whole, and returns; the HTTP server
closes. SIGINT and SIGTERM set that event, and the process is gone within STOP_DEADLINE_SECS
whatever the RPC or the database is doing (see StopDeadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI

from stellar_reconciler.api import ApiContext, create_app
from stellar_reconciler.api.event_stream import close_event_streams
from stellar_reconciler.api.live import close_streams
from stellar_reconciler.api.scrub import ScrubSecrets
from stellar_reconciler.attempts import RpcAttempts
from stellar_reconciler.backfill import Backfill
from stellar_reconciler.collector import tune_garbage_collector
from stellar_reconciler.config import TESTNET_PASSPHRASE, Settings, redact_url
from stellar_reconciler.control import Controls
from stellar_reconciler.crosscheck import Against, LakeSource, require_lake
from stellar_reconciler.errors import (
    NetworkMismatchError,
    NothingStoredError,
    ReconcilerError,
    ServiceError,
    SetupError,
    StopDeadlineError,
)
from stellar_reconciler.fetch_process import CatchUpSource, FetchConfig, FetchProcess
from stellar_reconciler.fetcher import InProcessSource, RangeFetcher
from stellar_reconciler.leadership import Leadership
from stellar_reconciler.maintenance import Maintenance
from stellar_reconciler.metrics import Metrics
from stellar_reconciler.proof import settings_part
from stellar_reconciler.publish_child import PublishStart
from stellar_reconciler.publish_process import PublishProcess
from stellar_reconciler.publisher import NatsPublisher
from stellar_reconciler.redaction import Redactor
from stellar_reconciler.rpc import RetryPolicy, RpcObserver, StellarRpc, new_http_client
from stellar_reconciler.startup import StartUp, open_listener
from stellar_reconciler.status import ServiceStatus
from stellar_reconciler.store import (
    AdvisoryLease,
    BatchHook,
    ExpectationMatcher,
    FileLease,
    ShapeWatch,
    Store,
    instance_name,
)
from stellar_reconciler.telemetry import Telemetry
from stellar_reconciler.webhook import WebhookSender
from stellar_reconciler.worker import Worker, WorkerOptions

log = structlog.get_logger("stellar_reconciler.service")

# A stop signal ends `reconciler run` within this many seconds, whatever it is waiting for.
STOP_DEADLINE_SECS = 10.0
# Of which the tasks get this long to wind down before they are cancelled...
TASKS_GRACE_SECS = 7.0
# ...and the process is ended outright this long after the signal (a thread stuck in a
# database call would otherwise hold the interpreter's exit): a second before the deadline.
FORCED_EXIT_SECS = STOP_DEADLINE_SECS - 1.0
# The exit code when the deadline had to end the process.
FORCED_EXIT_CODE = 1


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


def build_rpc(settings: Settings, observer: RpcObserver | None = None) -> StellarRpc:
    client = new_http_client(settings.rpc_timeout_secs, settings.user_agent)
    policy = RetryPolicy.from_settings(settings)
    return StellarRpc(client, settings.stellar_rpc_url, policy, observer=observer)


def build_worker(
    settings: Settings,
    rpc: StellarRpc,
    store: Store,
    status: ServiceStatus,
    metrics: Metrics,
    batch_hooks: Sequence[BatchHook] = (),
) -> Worker:
    """A worker and the source of its batches: a backlog of CATCH_UP_PROCESS_LEDGERS or more
    through a child process, anything shorter in this process (0: always in this process)."""
    options = WorkerOptions.from_settings(settings)
    in_process = InProcessSource(RangeFetcher(rpc, options.filter_sets), options.sizing)
    child = None
    if settings.catch_up_process_ledgers:
        config = FetchConfig.from_settings(settings, options.filter_sets)
        child = FetchProcess(config, options.sizing, RpcAttempts(metrics, status))
    source = CatchUpSource(in_process, child, settings.catch_up_process_ledgers)
    return Worker(rpc, store, status, metrics, options, source, batch_hooks)


@dataclass
class Service:
    settings: Settings
    store: Store
    status: ServiceStatus
    metrics: Metrics
    controls: Controls
    rpc: StellarRpc
    worker: Worker
    maintenance: Maintenance
    telemetry: Telemetry
    app: FastAPI
    server: _QuietServer
    # Bound before anything else at start-up (or handed over by `demo`, which words its own
    # advice); the HTTP server serves on it.
    listener: socket.socket | None = None
    # Who may write: leader and standbys on PostgreSQL, one process per file on SQLite.
    leadership: Leadership | None = None
    file_lease: FileLease | None = None

    @classmethod
    def build(cls, settings: Settings) -> Service:
        status = ServiceStatus(poll_interval=settings.poll_interval_secs)
        metrics = Metrics(status)
        name = instance_name(settings.advertised_url)
        store = Store.open(settings.sqlalchemy_url, application_name=name)
        # With NATS on, every batch queues its events for the publisher in its own transaction.
        store.outbox.enabled = bool(settings.nats_url)
        controls = Controls(status)
        rpc = build_rpc(settings, RpcAttempts(metrics, status))
        status.track_pending_calls(rpc.pending)
        worker = build_worker(settings, rpc, store, status, metrics)
        maintenance = Maintenance(
            rpc,
            store,
            status,
            metrics,
            controls,
            worker.options.filter_sets,
            settings.verify_every_ledgers,
            lake=LakeSource.from_settings(settings, metrics),
            backfill=Backfill.for_settings(store, rpc, settings),
            settings=settings,
        )
        telemetry = Telemetry(
            metrics,
            status,
            store=store,
            webhooks=bool(settings.webhook_urls),
            nats=bool(settings.nats_url),
        )
        app = create_app(
            ApiContext(
                store=store,
                status=status,
                metrics=metrics,
                controls=controls,
                telemetry=telemetry,
                service_name=settings.service_name,
                safe_settings=settings.safe_view(),
                proof_settings=settings_part(settings),
                admin_token=settings.admin_token,
                read_token=settings.read_token,
            )
        )
        # Whatever a route returns, no configured secret leaves the service.
        app.add_middleware(ScrubSecrets, redactor=Redactor.from_settings(settings))
        config = uvicorn.Config(
            app,
            host=settings.bind_host,
            port=settings.bind_port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        service = cls(
            settings,
            store,
            status,
            metrics,
            controls,
            rpc,
            worker,
            maintenance,
            telemetry,
            app,
            _QuietServer(config),
        )
        # Expected records are matched inside each batch's transaction (and each repair's).
        matcher = ExpectationMatcher(store.expectations, settings.unexpected_event_contracts)
        # Shapes first: the matcher's expiry reads the unreadable amounts they note.
        shapes = ShapeWatch([*settings.contract_ids, *settings.unexpected_event_contracts])
        hooks: list[BatchHook] = [shapes, matcher]
        if store.dialect != "postgresql":
            # SQLite: one writer per file (an in-memory database has no file to share).
            service.file_lease = FileLease.for_database(settings.sqlalchemy_url)
        else:
            lease = AdvisoryLease(settings.sqlalchemy_url, name, settings.leader_lease_secs)
            service.leadership = Leadership(
                lease, status, metrics, settings.advertised_url, settings.leader_retry_secs
            )
            # Last in every batch: it proves, inside the transaction, that we still lead.
            hooks.append(lambda conn, _batch: lease.fence(conn))
        service.set_batch_hooks(hooks)
        return service

    def worker_kill_fetch_process(self) -> None:
        self.worker.kill_fetch_process()

    def set_batch_hooks(self, hooks: Sequence[BatchHook]) -> None:
        """Work committed with every batch (and every repair) from now on."""
        self.worker.batch_hooks = tuple(hooks)
        self.maintenance.batch_hooks = tuple(hooks)

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
            self.worker.options.fingerprint,
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
        """A fresh worker with the same batch hooks, and the old one's halt forgotten."""
        self.status.unblock()
        self.status.forget_poll_failure()
        hooks = self.worker.batch_hooks
        self.worker = build_worker(
            self.settings, self.rpc, self.store, self.status, self.metrics, hooks
        )

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


async def run_verification(
    settings: Settings, first: int | None, last: int | None, against: Against = "rpc"
) -> dict[str, Any]:
    """`reconciler verify`: gaps, then re-verification of first..last (default: all stored)
    against the RPC, the lake (LAKE_URL) or both.

    Never creates or migrates a database; refuses an RPC or a lake of another network than the
    one the stored data came from, before asking it anything else. Against the lake alone the
    RPC is not asked at all (and gaps are not filled).
    """
    require_lake(against, bool(settings.lake_url))
    if against == "lake":
        return await _verify_with_lake_only(settings, first, last)
    store = await asyncio.to_thread(Store.open_existing, settings.sqlalchemy_url)
    # Events its repairs add are queued like the running service's; that one sends them.
    store.outbox.enabled = bool(settings.nats_url)
    rpc = build_rpc(settings)
    rpc_url = redact_url(settings.stellar_rpc_url)
    try:
        low, high, count = await asyncio.to_thread(store.ledger_bounds)
        if not count or low is None or high is None:
            raise NothingStoredError("nothing is stored yet: there is nothing to verify")
        recorded = await asyncio.to_thread(store.network.passphrase)
        if (
            recorded is not None
            and recorded != TESTNET_PASSPHRASE
            and "stellar_rpc_url" not in settings.model_fields_set
        ):
            # The default RPC is testnet's: no need to ask it to know it is the wrong one.
            raise NetworkMismatchError(recorded, TESTNET_PASSPHRASE, rpc_url)
        network = await rpc.get_network()
        await asyncio.to_thread(store.network.check, network.passphrase, rpc_url)
        first = low if first is None else max(first, low)
        last = high if last is None else min(last, high)
        if first > last:
            raise SetupError(f"--from/--to select no stored ledger (stored: {low}-{high})")
        status = ServiceStatus()
        maintenance = Maintenance(
            rpc,
            store,
            status,
            Metrics(status),
            Controls(),
            WorkerOptions.from_settings(settings).filter_sets,
            settings.verify_every_ledgers,
            lake=LakeSource.from_settings(settings),
        )
        tip = await rpc.get_health()
        report = await maintenance.repair_gaps(tip, first, last)
        report = await maintenance.verify(first, last, report=report, against=against)
        report.first_ledger, report.last_ledger = first, last
        return report.as_json()
    finally:
        await rpc.aclose()
        store.close()


async def _verify_with_lake_only(
    settings: Settings, first: int | None, last: int | None
) -> dict[str, Any]:
    store = await asyncio.to_thread(Store.open_existing, settings.sqlalchemy_url)
    rpc = build_rpc(settings)
    try:
        low, high, count = await asyncio.to_thread(store.ledger_bounds)
        if not count or low is None or high is None:
            raise NothingStoredError("nothing is stored yet: there is nothing to verify")
        first = low if first is None else max(first, low)
        last = high if last is None else min(last, high)
        if first > last:
            raise SetupError(f"--from/--to select no stored ledger (stored: {low}-{high})")
        status = ServiceStatus()
        maintenance = Maintenance(
            rpc, store, status, Metrics(status), Controls(), [],
            settings.verify_every_ledgers, lake=LakeSource.from_settings(settings),
        )  # fmt: skip
        report = await maintenance.verify(first, last, against="lake")
        return report.as_json()
    finally:
        await rpc.aclose()
        store.close()


class StopDeadline:
    """Ends the process FORCED_EXIT_SECS after the first stop signal, or at once on a second.

    A cancelled task lets go at once, but a thread stuck in a database call (a lock that is
    never released, a server that stopped answering) cannot be cancelled, and the interpreter
    waits for it before exiting. Ending the process is safe for the data: a transaction that
    never sent its COMMIT is rolled back by the database.
    """

    def __init__(self, describe: Callable[[], str], before_exit: Callable[[], None]) -> None:
        self._describe = describe
        self._before_exit = before_exit
        self._timer: threading.Timer | None = None
        self._signalled_at: float | None = None

    def signalled(self, stop: asyncio.Event) -> None:
        if self._timer is not None:
            log.warning("stop_signal_repeated", hint="exiting now")
            self._expire()
        self._signalled_at = time.monotonic()
        stop.set()
        self._timer = threading.Timer(FORCED_EXIT_SECS, self._expire)
        self._timer.daemon = True
        self._timer.start()
        log.info("stop_requested", deadline_secs=STOP_DEADLINE_SECS)

    def expire(self) -> None:
        """End the process now (the service stopped, but a thread still holds its exit)."""
        self._expire()

    def _expire(self) -> None:
        started = self._signalled_at
        waited = time.monotonic() - started if started is not None else 0.0
        error = StopDeadlineError(round(waited, 1), self._describe())
        try:
            self._before_exit()
        finally:
            log.error("stop_forced", error=str(error), exit_code=FORCED_EXIT_CODE)
            logging.shutdown()
            os._exit(FORCED_EXIT_CODE)


def install_signal_handlers(stop: asyncio.Event, deadline: StopDeadline | None = None) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        if deadline is None:
            loop.add_signal_handler(sig, stop.set)
        else:
            loop.add_signal_handler(sig, deadline.signalled, stop)


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
