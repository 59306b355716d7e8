"""Every Prometheus metric the service exports, declared once, on a registry of its own.

A registry per service instance (not the global one) lets tests and the demo run several
services in one process without metric name clashes.

Nothing here reads the database at scrape time: /metrics must keep answering while the
database is down, which is exactly when an operator needs it. Values that live in the
database are pushed in by their owners (the worker on commit, the telemetry loop
periodically), each family with a timestamp gauge saying when it was last refreshed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stellar_reconciler.status import ServiceStatus

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ObservedGauge(Collector):
    """A gauge with no sample until its value is known, then the last known value together
    with `<name>_observed_timestamp_seconds`, the Unix time it was last observed.

    A plain Gauge reads 0 before its first set, and 0 is a plausible ledger number or lag: an
    outage would look like good news. Keeping the last value with its age lets an alert rule
    tell "lag 3" from "lag 3, an hour ago".
    """

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.value: float | None = None
        self.observed_at: float | None = None
        registry.register(self)

    def set(self, value: float, observed_at: float | None = None) -> None:
        self.value = float(value)
        self.observed_at = time.time() if observed_at is None else observed_at

    def collect(self) -> Iterator[Metric]:
        value = GaugeMetricFamily(self.name, self.documentation)
        stamp = GaugeMetricFamily(
            f"{self.name}_observed_timestamp_seconds",
            f"Unix time {self.name} was last observed; its value is kept until the next.",
        )
        if self.value is not None and self.observed_at is not None:
            value.add_metric([], self.value)
            stamp.add_metric([], self.observed_at)
        yield value
        yield stamp

    def describe(self) -> Iterator[Metric]:
        # Registering calls describe() to reserve names; collect() must not run then, and
        # it yields the same families anyway.
        yield GaugeMetricFamily(self.name, self.documentation)
        yield GaugeMetricFamily(f"{self.name}_observed_timestamp_seconds", "")


class Metrics:
    """The service's metrics; also an RPC observer counting attempts and retries (see
    RpcAttempts, which tells the status too)."""

    def __init__(self, status: ServiceStatus | None = None) -> None:
        # `_created` series double the output and mean nothing to an alert rule; the switch is
        # process-wide in prometheus_client, and every registry here wants it off.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream
        self.registry = CollectorRegistry()
        self._status = status
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.processed_ledgers = Counter(
            "reconciler_processed_ledgers", "Ledgers committed to the database.", registry=r
        )
        self.processing_errors = Counter(
            "reconciler_processing_errors",
            "Failed polls or batches, by kind of failure.",
            ["kind"],
            registry=r,
        )
        self.events_indexed = Counter(
            "reconciler_events_indexed", "Contract events committed to the database.", registry=r
        )
        self.latest_ledger = ObservedGauge(
            "reconciler_latest_ledger",
            "Latest ledger the RPC node reported (no sample until it answers once).",
            r,
        )
        self.checkpoint_ledger = ObservedGauge(
            "reconciler_checkpoint_ledger",
            "Last ledger committed (the checkpoint; no sample until read or committed).",
            r,
        )
        self.ledger_lag = ObservedGauge(
            "reconciler_ledger_lag",
            "Ledgers between the network's latest and the checkpoint (never negative; no "
            "sample until both are known).",
            r,
        )
        self.healthy = Gauge(
            "reconciler_healthy", "1 when /health answers 200, else 0.", registry=r
        )
        self.rpc_requests = Counter(
            "reconciler_rpc_requests",
            "Stellar RPC request attempts, by method and outcome.",
            ["method", "outcome"],
            registry=r,
        )
        self.rpc_retries = Counter(
            "reconciler_rpc_retries",
            "Stellar RPC attempts that were retries.",
            ["method"],
            registry=r,
        )
        self.rpc_duration = Histogram(
            "reconciler_rpc_request_duration_seconds",
            "Time per Stellar RPC attempt.",
            ["method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.batch_duration = Histogram(
            "reconciler_batch_duration_seconds",
            "Time to commit one batch (events, ledgers and checkpoint in one transaction).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.batch_ledgers = Histogram(
            "reconciler_batch_ledgers",
            "Ledgers per committed batch.",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000),
            registry=r,
        )
        self.discrepancies_open = Gauge(
            "reconciler_discrepancies_open", "Open discrepancies, by kind.", ["kind"], registry=r
        )
        self.expectations = Gauge(
            "reconciler_expectations", "Expected records, by status.", ["status"], registry=r
        )
        # Read from the database: chunks are written by every backfill-worker, on any host.
        self.backfill_chunks = Gauge(
            "reconciler_backfill_chunks",
            "Backfill chunks of every run, by state (pending, running, done, failed).",
            ["state"],
            registry=r,
        )
        self.backfill_ledgers = Gauge(
            "reconciler_backfill_ledgers",
            "Ledgers written by backfill chunks, all workers together (grows only).",
            registry=r,
        )
        self.expectations_refreshed = Gauge(
            "reconciler_expectations_refreshed_timestamp_seconds",
            "Unix time reconciler_expectations was last read from the database.",
            registry=r,
        )
        self.webhook_outbox_pending = ObservedGauge(
            "reconciler_webhook_outbox_pending",
            "Discrepancies whose webhook is not delivered yet (no sample without WEBHOOK_URLS).",
            r,
        )
        self.nats_outbox_pending = ObservedGauge(
            "reconciler_nats_outbox_pending",
            "Events and records waiting to be published to NATS (no sample without NATS_URL).",
            r,
        )
        self.lake_fetch_duration = Histogram(
            "reconciler_lake_fetch_duration_seconds",
            "Time per data lake object read, by outcome (ok, missing, error).",
            ["outcome"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.lake_fetched_bytes = Counter(
            "reconciler_lake_fetched_bytes",
            "Bytes of data lake objects read (compressed, as stored).",
            registry=r,
        )
        self.discrepancies_refreshed = Gauge(
            "reconciler_discrepancies_refreshed_timestamp_seconds",
            "Unix time reconciler_discrepancies_open was last read from the database.",
            registry=r,
        )
        self.leader = Gauge(
            "reconciler_leader",
            "1 while this replica holds the leader's lock (and so writes), 0 on a standby.",
            registry=r,
        )
        self.leader.set(1)
        self.event_streams = Gauge(
            "reconciler_event_streams", "Open GET /api/events/stream connections.", registry=r
        )
        self.event_stream_cutoffs = Counter(
            "reconciler_event_stream_cutoffs",
            "Event streams cut off because their client took no data for the send timeout.",
            registry=r,
        )

    # RpcObserver -----------------------------------------------------------------------------

    def rpc_attempt(self, method: str, outcome: str, seconds: float, error: str | None) -> None:
        self.rpc_requests.labels(method=method, outcome=outcome).inc()
        self.rpc_duration.labels(method=method).observe(seconds)

    def rpc_retry(self, method: str) -> None:
        self.rpc_retries.labels(method=method).inc()

    # LakeObserver ----------------------------------------------------------------------------

    def lake_fetch(self, outcome: str, seconds: float, size: int) -> None:
        self.lake_fetch_duration.labels(outcome=outcome).observe(seconds)
        if size:
            self.lake_fetched_bytes.inc(size)

    def set_leader(self, leading: bool) -> None:
        self.leader.set(1 if leading else 0)

    # Owners of database-held values -------------------------------------------------------

    def set_expectation_counts(self, counts: dict[str, int]) -> None:
        for status_name, count in counts.items():
            self.expectations.labels(status=status_name).set(count)
        self.expectations_refreshed.set(time.time())

    def set_discrepancy_counts(self, counts: dict[str, int]) -> None:
        for kind, count in counts.items():
            self.discrepancies_open.labels(kind=kind).set(count)
        self.discrepancies_refreshed.set(time.time())

    def set_backfill(self, chunks_by_state: dict[str, int], ledgers_written: int) -> None:
        for state, count in chunks_by_state.items():
            self.backfill_chunks.labels(state=state).set(count)
        self.backfill_ledgers.set(ledgers_written)

    # Rendering ---------------------------------------------------------------------------------

    def refresh_from_status(self) -> None:
        """Copy what the status knows (memory only) into the gauges; unknowns stay unset."""
        status = self._status
        if status is None:
            return
        tip_seen = status.tip_observed_at
        if status.tip is not None and tip_seen is not None:
            self.latest_ledger.set(status.tip.latest_ledger, tip_seen)
            lag = status.ledger_lag
            if lag is not None:
                self.ledger_lag.set(lag, tip_seen)
        if (
            status.last_processed_ledger is not None
            and status.last_processed_ledger != self.checkpoint_ledger.value
        ):
            self.checkpoint_ledger.set(status.last_processed_ledger)
        self.healthy.set(1 if status.health()["healthy"] else 0)

    def render(self) -> bytes:
        """The text exposition, with the status gauges refreshed from memory first."""
        self.refresh_from_status()
        return generate_latest(self.registry)
