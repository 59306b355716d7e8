"""Telemetry: a rolling window of samples of the service's own metrics, for the dashboard.

Prometheus keeps history for those who run one; the dashboard must work without it, so the
service remembers the last 15 minutes itself. Samples are read from the same registry that
/metrics exposes, so the two never disagree.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from stellar_reconciler.metrics import Metrics
from stellar_reconciler.status import ServiceStatus

WINDOW_SECONDS = 15 * 60


class Telemetry:
    def __init__(self, metrics: Metrics, status: ServiceStatus, interval: float = 2.0) -> None:
        self.metrics = metrics
        self.status = status
        self.interval = interval
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

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                continue
