"""RpcAttempts: each RPC attempt reaches the metrics and the status, and Metrics alone writes
no status."""

from __future__ import annotations

from stellar_reconciler.attempts import RpcAttempts
from stellar_reconciler.metrics import Metrics
from stellar_reconciler.status import FAILURES_BEFORE_DEGRADED, ServiceStatus


def requests(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "reconciler_rpc_requests_total", {"method": "getHealth", "outcome": outcome}
    )
    return value or 0.0


def test_failed_attempts_are_counted_and_make_health_degraded() -> None:
    """FAILURES_BEFORE_DEGRADED failed attempts: counted by outcome, and health degraded with
    the last error; one good attempt resets the run of failures but not the counts."""
    status = ServiceStatus()
    metrics = Metrics(status)
    attempts = RpcAttempts(metrics, status)
    for _ in range(FAILURES_BEFORE_DEGRADED):
        attempts.rpc_attempt("getHealth", "transient", 0.1, "getHealth: HTTP 503")
    assert requests(metrics, "transient") == FAILURES_BEFORE_DEGRADED
    assert status.consecutive_failures == FAILURES_BEFORE_DEGRADED
    assert status.last_error == "getHealth: HTTP 503"
    attempts.rpc_attempt("getHealth", "ok", 0.1, None)
    assert requests(metrics, "ok") == 1 and status.consecutive_failures == 0


def test_retries_are_counted() -> None:
    """A retry reaches the retry counter of its method."""
    status = ServiceStatus()
    metrics = Metrics(status)
    RpcAttempts(metrics, status).rpc_retry("getEvents")
    retries = metrics.registry.get_sample_value(
        "reconciler_rpc_retries_total", {"method": "getEvents"}
    )
    assert retries == 1


def test_metrics_alone_leave_the_status_alone() -> None:
    """An attempt told to Metrics only is counted there and not seen by the status."""
    status = ServiceStatus()
    metrics = Metrics(status)
    metrics.rpc_attempt("getHealth", "transient", 0.1, "getHealth: HTTP 503")
    assert requests(metrics, "transient") == 1
    assert status.consecutive_failures == 0 and status.last_error is None
