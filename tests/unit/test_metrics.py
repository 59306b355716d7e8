"""Metrics: no sample for what is unknown, the last known value with its observation time
after, and no `_created` series."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from stellar_reconciler.metrics import Metrics
from stellar_reconciler.models import NetworkTip
from stellar_reconciler.status import ServiceStatus
from stellar_reconciler.store import NewDiscrepancy, Store
from stellar_reconciler.telemetry import Telemetry
from tests.factories import make_batch


def rendered(metrics: Metrics) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
        if not sample.labels
    }


def test_unknown_ledgers_have_no_sample() -> None:
    """Before the RPC answers: no latest_ledger, checkpoint or lag sample, not even 0."""
    samples = rendered(Metrics(ServiceStatus()))
    for name in (
        "reconciler_latest_ledger",
        "reconciler_checkpoint_ledger",
        "reconciler_ledger_lag",
    ):
        assert name not in samples and f"{name}_observed_timestamp_seconds" not in samples
    assert samples["reconciler_healthy"] == 0


def test_known_values_carry_when_they_were_observed() -> None:
    """After a tip and a commit: values, with the tip's observation time for latest and lag."""
    status = ServiceStatus()
    metrics = Metrics(status)
    before = time.time()
    status.observe_tip(NetworkTip(latest_ledger=120, oldest_ledger=10))
    status.record_progress(117)
    samples = rendered(metrics)
    assert samples["reconciler_latest_ledger"] == 120
    assert samples["reconciler_checkpoint_ledger"] == 117
    assert samples["reconciler_ledger_lag"] == 3
    seen = samples["reconciler_latest_ledger_observed_timestamp_seconds"]
    assert before <= seen <= time.time()
    assert samples["reconciler_ledger_lag_observed_timestamp_seconds"] == seen
    assert samples["reconciler_checkpoint_ledger_observed_timestamp_seconds"] >= before


def test_values_stay_while_nothing_new_is_observed() -> None:
    """Two scrapes with no new observation between them: same values, same timestamps."""
    status = ServiceStatus()
    metrics = Metrics(status)
    status.observe_tip(NetworkTip(latest_ledger=50, oldest_ledger=1))
    status.record_progress(50)
    first = rendered(metrics)
    status.record_poll_failure("getHealth: HTTP 500")
    second = rendered(metrics)
    for name in (
        "reconciler_latest_ledger",
        "reconciler_latest_ledger_observed_timestamp_seconds",
        "reconciler_checkpoint_ledger_observed_timestamp_seconds",
    ):
        assert second[name] == first[name]
    assert second["reconciler_healthy"] == 0


def test_no_created_series_and_refresh_timestamps_set_by_their_owner() -> None:
    """No `_created` samples; the counts' refresh gauges move only when counts are pushed."""
    metrics = Metrics(ServiceStatus())
    metrics.processed_ledgers.inc()
    assert not [name for name in rendered(metrics) if name.endswith("_created")]
    assert rendered(metrics)["reconciler_expectations_refreshed_timestamp_seconds"] == 0
    metrics.set_expectation_counts({"pending": 2})
    assert rendered(metrics)["reconciler_expectations_refreshed_timestamp_seconds"] > 0


def test_webhook_outbox_length_is_served_only_when_webhooks_are_configured(store: Store) -> None:
    """Undelivered webhooks are counted into reconciler_webhook_outbox_pending from the
    database by the telemetry refresh, and shrink as deliveries are marked; without
    WEBHOOK_URLS the gauge stays unset (nothing would ever deliver them)."""
    for n in range(3):
        store.discrepancies.open(NewDiscrepancy(kind="gap", key=f"gap:{n}", message="gap"))
    with_hooks, without = Metrics(ServiceStatus()), Metrics(ServiceStatus())
    assert Telemetry(with_hooks, ServiceStatus(), store=store, webhooks=True).refresh_from_store()
    assert Telemetry(without, ServiceStatus(), store=store).refresh_from_store()
    assert rendered(with_hooks)["reconciler_webhook_outbox_pending"] == 3
    assert "reconciler_webhook_outbox_pending" not in rendered(without)
    (first, *_) = store.discrepancies.undelivered()
    store.discrepancies.mark_notified(first["id"], delivered=True)
    Telemetry(with_hooks, ServiceStatus(), store=store, webhooks=True).refresh_from_store()
    assert rendered(with_hooks)["reconciler_webhook_outbox_pending"] == 2


def test_nats_outbox_length_is_served_only_when_nats_is_configured(store: Store) -> None:
    """Queued events are counted into reconciler_nats_outbox_pending by the telemetry refresh
    and shrink as they are marked sent; without NATS_URL the gauge stays unset."""
    store.outbox.enabled = True
    store.ensure_stream(10, "fp")
    store.commit_batch(make_batch(10, 12))
    with_nats, without = Metrics(ServiceStatus()), Metrics(ServiceStatus())
    assert Telemetry(with_nats, ServiceStatus(), store=store, nats=True).refresh_from_store()
    assert Telemetry(without, ServiceStatus(), store=store).refresh_from_store()
    assert rendered(with_nats)["reconciler_nats_outbox_pending"] == 3
    assert "reconciler_nats_outbox_pending" not in rendered(without)
    store.outbox.mark_sent([store.outbox.pending(1)[0].seq])
    Telemetry(with_nats, ServiceStatus(), store=store, nats=True).refresh_from_store()
    assert rendered(with_nats)["reconciler_nats_outbox_pending"] == 2
