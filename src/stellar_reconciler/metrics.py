"""Every Prometheus metric the service exports, declared once, on a registry of its own.

A registry per service instance (not the global one) lets tests and the demo run several
services in one process without metric name clashes.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from stellar_reconciler.status import ServiceStatus

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The service's metrics; also the RPC client's observer of attempts and retries."""

    def __init__(self, status: ServiceStatus | None = None) -> None:
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
        self.latest_ledger = Gauge(
            "reconciler_latest_ledger", "Latest ledger the RPC node reports.", registry=r
        )
        self.checkpoint_ledger = Gauge(
            "reconciler_checkpoint_ledger", "Last ledger committed (the checkpoint).", registry=r
        )
        self.ledger_lag = Gauge(
            "reconciler_ledger_lag",
            "Ledgers between the network's latest and the checkpoint (never negative).",
            registry=r,
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

    # RpcObserver -----------------------------------------------------------------------------

    def rpc_attempt(self, method: str, outcome: str, seconds: float, error: str | None) -> None:
        self.rpc_requests.labels(method=method, outcome=outcome).inc()
        self.rpc_duration.labels(method=method).observe(seconds)
        if self._status is not None:
            self._status.record_attempt(outcome == "ok", error)

    def rpc_retry(self, method: str) -> None:
        self.rpc_retries.labels(method=method).inc()

    # Rendering ---------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The text exposition, with gauges refreshed from the status first."""
        if self._status is not None:
            health = self._status.health()
            if health["latest_ledger"] is not None:
                self.latest_ledger.set(health["latest_ledger"])
            if health["last_processed_ledger"] is not None:
                self.checkpoint_ledger.set(health["last_processed_ledger"])
            if health["ledger_lag"] is not None:
                self.ledger_lag.set(health["ledger_lag"])
            self.healthy.set(1 if health["healthy"] else 0)
        return generate_latest(self.registry)
