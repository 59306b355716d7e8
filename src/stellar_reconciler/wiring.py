"""Wiring: the object graph of `reconciler run`, built once from the settings.

`wire` builds every part in the order the parts need each other, so each is whole when it is
made: the batch hooks exist before the worker and the maintenance that run them, and the
settings are read into `WorkerOptions` once. Workers come from a `WorkerFactory`, so the
first worker, the one after an operator's restart and the one of a new term of leadership
are made alike. `reconciler verify` reuses the `Core` (settings, status, metrics, RPC and
store) and its maintenance, without the rest (see verification.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastapi import FastAPI

from stellar_reconciler.api import ApiContext, create_app
from stellar_reconciler.api.scrub import ScrubSecrets
from stellar_reconciler.attempts import RpcAttempts
from stellar_reconciler.backfill import Backfill
from stellar_reconciler.config import Settings
from stellar_reconciler.control import Controls
from stellar_reconciler.crosscheck import LakeSource
from stellar_reconciler.fetch_process import CatchUpSource, FetchConfig, FetchProcess
from stellar_reconciler.fetcher import InProcessSource, RangeFetcher
from stellar_reconciler.leadership import Leadership
from stellar_reconciler.maintenance import Maintenance
from stellar_reconciler.metrics import Metrics
from stellar_reconciler.proof import settings_part
from stellar_reconciler.redaction import Redactor
from stellar_reconciler.rpc import StellarRpc
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
from stellar_reconciler.worker import Worker, WorkerOptions

# What runs inside every batch's transaction (and every repair's), given the settings and
# the store; `wire` adds the leader's fence after them on PostgreSQL.
Hooks = Callable[[Settings, Store], list[BatchHook]]


def standard_hooks(settings: Settings, store: Store) -> list[BatchHook]:
    """Shape watching, then expected records matched against the batch's events (inside
    its transaction, and inside each repair's)."""
    matcher = ExpectationMatcher(store.expectations, settings.unexpected_event_contracts)
    # Shapes first: the matcher's expiry reads the unreadable amounts they note.
    shapes = ShapeWatch([*settings.contract_ids, *settings.unexpected_event_contracts])
    return [shapes, matcher]


@dataclass(frozen=True)
class Core:
    """What every command that reads the network into the store shares."""

    settings: Settings
    options: WorkerOptions
    status: ServiceStatus
    metrics: Metrics
    rpc: StellarRpc
    store: Store

    @classmethod
    def of(cls, settings: Settings, store: Store) -> Core:
        status = ServiceStatus(poll_interval=settings.poll_interval_secs)
        metrics = Metrics(status)
        rpc = StellarRpc.from_settings(settings, RpcAttempts(metrics, status))
        status.track_pending_calls(rpc.pending)
        # With NATS on, every batch queues its events for the publisher in its own transaction.
        store.outbox.enabled = bool(settings.nats_url)
        return cls(settings, WorkerOptions.from_settings(settings), status, metrics, rpc, store)

    def maintenance(
        self, controls: Controls, hooks: Sequence[BatchHook] = (), *, jobs: bool = False
    ) -> Maintenance:
        """Re-verification and gap filling; with `jobs`, also the operators' backfills and
        gaps older than the RPC filled from the lake (the running service's, not verify's)."""
        settings = self.settings
        return Maintenance(
            self.rpc,
            self.store,
            self.status,
            self.metrics,
            controls,
            self.options.filter_sets,
            settings.verify_every_ledgers,
            batch_hooks=hooks,
            lake=LakeSource.from_settings(settings, self.metrics),
            backfill=Backfill.for_settings(self.store, self.rpc, settings) if jobs else None,
            settings=settings if jobs else None,
        )


@dataclass(frozen=True)
class WorkerFactory:
    """A fresh worker at each call, all with the same options and batch hooks: a backlog of
    CATCH_UP_PROCESS_LEDGERS or more through a child process, anything shorter in this
    process (0: always in this process)."""

    core: Core
    batch_hooks: tuple[BatchHook, ...]

    @property
    def options(self) -> WorkerOptions:
        return self.core.options

    def __call__(self) -> Worker:
        core, options = self.core, self.core.options
        in_process = InProcessSource(RangeFetcher(core.rpc, options.filter_sets), options.sizing)
        child = None
        if core.settings.catch_up_process_ledgers:
            config = FetchConfig.from_settings(core.settings, options.filter_sets)
            child = FetchProcess(config, options.sizing, RpcAttempts(core.metrics, core.status))
        source = CatchUpSource(in_process, child, core.settings.catch_up_process_ledgers)
        return Worker(
            core.rpc, core.store, core.status, core.metrics, options, source, self.batch_hooks
        )


@dataclass(frozen=True)
class Graph:
    """Everything `reconciler run` runs but the HTTP server's loop."""

    core: Core
    controls: Controls
    workers: WorkerFactory
    maintenance: Maintenance
    telemetry: Telemetry
    app: FastAPI
    # Who may write: leader and standbys on PostgreSQL, one process per file on SQLite.
    leadership: Leadership | None
    file_lease: FileLease | None


def wire(settings: Settings, hooks: Hooks = standard_hooks) -> Graph:
    """The service's object graph; `hooks` chooses the batch hooks (tests time them)."""
    name = instance_name(settings.advertised_url)
    core = Core.of(settings, Store.open(settings.sqlalchemy_url, application_name=name))
    batch_hooks = hooks(settings, core.store)
    leadership, file_lease = None, None
    if core.store.dialect != "postgresql":
        # SQLite: one writer per file (an in-memory database has no file to share).
        file_lease = FileLease.for_database(settings.sqlalchemy_url)
    else:
        lease = AdvisoryLease(settings.sqlalchemy_url, name, settings.leader_lease_secs)
        leadership = Leadership(
            lease, core.status, core.metrics, settings.advertised_url, settings.leader_retry_secs
        )
        # Last in every batch: it proves, inside the transaction, that we still lead.
        batch_hooks.append(lambda conn, _batch: lease.fence(conn))
    controls = Controls(core.status)
    telemetry = Telemetry(
        core.metrics,
        core.status,
        store=core.store,
        webhooks=bool(settings.webhook_urls),
        nats=bool(settings.nats_url),
    )
    return Graph(
        core,
        controls,
        WorkerFactory(core, tuple(batch_hooks)),
        core.maintenance(controls, batch_hooks, jobs=True),
        telemetry,
        _app(core, controls, telemetry),
        leadership,
        file_lease,
    )


def _app(core: Core, controls: Controls, telemetry: Telemetry) -> FastAPI:
    settings = core.settings
    app = create_app(
        ApiContext(
            store=core.store,
            status=core.status,
            metrics=core.metrics,
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
    return app
