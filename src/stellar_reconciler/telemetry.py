"""Telemetry: a rolling window of samples of the service's own metrics, for the dashboard,
and the periodic refresh of the metrics whose values live in the database.

Prometheus keeps history for those who run one; the dashboard must work without it, so the
service remembers the last 15 minutes itself. Samples are read from the same registry that
/metrics exposes, so the two never disagree.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import structlog

from stellar_reconciler.errors import DatabaseUnavailableError
from stellar_reconciler.metrics import Metrics
from stellar_reconciler.status import ServiceStatus
from stellar_reconciler.store import Store

log = structlog.get_logger("stellar_reconciler.telemetry")

WINDOW_SECONDS = 15 * 60
# Counting expectations and discrepancies is two GROUP BY queries: cheap, but not worth
# running on every two-second sample of a large table.
STORE_REFRESH_SECONDS = 5.0


class Telemetry:
    def __init__(
        self,
        metrics: Metrics,
        status: ServiceStatus,
        interval: float = 2.0,
        store: Store | None = None,
        store_refresh: float = STORE_REFRESH_SECONDS,
        webhooks: bool = False,
        nats: bool = False,
    ) -> None:
        self.metrics = metrics
        self.status = status
        self.interval = interval
        self.store = store
        self.store_refresh = store_refresh
        # Without WEBHOOK_URLS nothing delivers, so the outbox's length would mean nothing.
        self.webhooks = webhooks
        # The same for the NATS outbox without NATS_URL.
        self.nats = nats
        # The last database error seen by a refresh, None while reads succeed.
        self.database_error: str | None = None
        self._samples: deque[dict[str, Any]] = deque(maxlen=int(WINDOW_SECONDS / interval) + 1)

    def _value(self, name: str, labels: dict[str, str] | None = None) -> float:
        return float(self.metrics.registry.get_sample_value(name, labels or {}) or 0.0)

    def _rpc_totals(self) -> tuple[float, float, float]:
        requests = errors = retries = 0.0
        for family in self.metrics.registry.collect():
            for sample in family.samples:
                if sample.name == "reconciler_rpc_requests_total":
                    requests += sample.value
                    if sample.labels.get("outcome") != "ok":
                        errors += sample.value
                elif sample.name == "reconciler_rpc_retries_total":
                    retries += sample.value
        return requests, errors, retries

    def sample(self) -> dict[str, Any]:
        """Take one sample now and keep it."""
        health = self.status.health()
        requests, errors, retries = self._rpc_totals()
        point = {
            "t": round(time.time(), 3),
            "checkpoint": health["last_processed_ledger"],
            "latest": health["latest_ledger"],
            "lag": health["ledger_lag"],
            "ledgers_total": self._value("reconciler_processed_ledgers_total"),
            "events_total": self._value("reconciler_events_indexed_total"),
            "cpu_seconds": self._value("process_cpu_seconds_total"),
            "rss_bytes": self._value("process_resident_memory_bytes"),
            "rpc_requests": requests,
            "rpc_errors": errors,
            "rpc_retries": retries,
        }
        self._samples.append(point)
        return point

    def samples(self) -> list[dict[str, Any]]:
        return list(self._samples)

    def refresh_from_store(self) -> bool:
        """Read the database-held metric values into memory (in a thread); on a database
        outage keep the last ones, whose refresh timestamps then stop moving. True if read."""
        if self.store is None:
            return False
        try:
            expectation_counts = self.store.expectations.counts()
            discrepancy_counts = self.store.discrepancies.open_counts()
            checkpoint = self.store.checkpoint().ledger
            outbox = self.store.discrepancies.undelivered_count() if self.webhooks else None
            nats_outbox = self.store.outbox.pending_count() if self.nats else None
        except DatabaseUnavailableError as exc:
            if self.database_error is None:
                log.error("metrics_refresh_failed", error=str(exc))
            self.database_error = str(exc)
            return False
        if self.database_error is not None:
            log.info("metrics_refresh_recovered")
            self.database_error = None
        self.metrics.set_expectation_counts(expectation_counts)
        self.metrics.set_discrepancy_counts(discrepancy_counts)
        if checkpoint is not None:
            self.metrics.checkpoint_ledger.set(checkpoint)
        if outbox is not None:
            self.metrics.webhook_outbox_pending.set(outbox)
        if nats_outbox is not None:
            self.metrics.nats_outbox_pending.set(nats_outbox)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        refreshed_at = float("-inf")
        while not stop.is_set():
            self.sample()
            if time.monotonic() - refreshed_at >= self.store_refresh:
                refreshed_at = time.monotonic()
                await asyncio.to_thread(self.refresh_from_store)
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                continue
