"""RpcAttempts: the RPC client's observer, telling each attempt to the metrics and the status.

The metrics count every attempt and retry; the status counts failed attempts in a row, which
turn health degraded after FAILURES_BEFORE_DEGRADED. Each is told here, and neither writes
the other.
"""

from __future__ import annotations

from stellar_reconciler.metrics import Metrics
from stellar_reconciler.status import ServiceStatus


class RpcAttempts:
    """An RpcObserver for the service's RPC client and its catch-up child."""

    def __init__(self, metrics: Metrics, status: ServiceStatus) -> None:
        self.metrics = metrics
        self.status = status

    def rpc_attempt(self, method: str, outcome: str, seconds: float, error: str | None) -> None:
        self.metrics.rpc_attempt(method, outcome, seconds, error)
        self.status.record_attempt(outcome == "ok", error)

    def rpc_retry(self, method: str) -> None:
        self.metrics.rpc_retry(method)
