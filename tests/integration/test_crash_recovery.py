"""`reconciler run` as a real process: killed with SIGKILL mid catch-up, stopped with SIGTERM."""

from __future__ import annotations

import signal

from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.store import Store
from tests.integration.harness import (
    network_event_ids,
    network_ledgers,
    reconciler_process,
    service_env,
    settings_for,
    stored_event_ids,
    stored_ledgers,
    wait_for_sync,
)


def checkpoint(database_url: str) -> int:
    store = Store.open(database_url)
    try:
        return store.checkpoint().ledger or 0
    finally:
        store.close()


def test_sigkill_during_catch_up_never_loses_or_repeats_an_event(database_url: str) -> None:
    """Killed four times with SIGKILL while catching up, then restarted: every event once."""
    net = SimNetwork(
        SimNetConfig(seed=11, first_ledger=20_000, prebuilt_ledgers=3_000, events_per_ledger=40)
    )
    with serve_in_thread(net) as url:
        # Small batches so several commits happen between kills.
        env = service_env(settings_for(database_url, url, batch_max_ledgers=60))
        kills = 0
        for target in (20_300, 20_900, 21_500, 22_100):
            with reconciler_process(env) as process:
                wait_for_sync(
                    lambda t=target: checkpoint(database_url) >= t, 120, f"checkpoint {target}"
                )
                process.send_signal(signal.SIGKILL)
                assert process.wait(10) == -signal.SIGKILL
                kills += 1
        assert kills == 4 and checkpoint(database_url) < net.latest_ledger
        with reconciler_process(env) as process:
            wait_for_sync(
                lambda: checkpoint(database_url) == net.latest_ledger, 120, "final catch-up"
            )
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
    assert stored_event_ids(database_url) == network_event_ids(net, 20_000, net.latest_ledger)
    assert stored_ledgers(database_url) == network_ledgers(net, 20_000, net.latest_ledger)


def test_sigterm_stops_cleanly_with_a_whole_batch(database_url: str) -> None:
    """SIGTERM mid catch-up exits 0, and what is stored ends exactly at the checkpoint."""
    net = SimNetwork(
        SimNetConfig(seed=12, first_ledger=300, prebuilt_ledgers=2_000, events_per_ledger=40)
    )
    with serve_in_thread(net) as url:
        env = service_env(settings_for(database_url, url, batch_max_ledgers=50))
        with reconciler_process(env) as process:
            wait_for_sync(lambda: checkpoint(database_url) >= 600, 120, "some progress")
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
            assert process.stderr is not None
            log = process.stderr.read().decode()
    assert '"event": "service_stopped"' in log
    stopped_at = checkpoint(database_url)
    assert stored_ledgers(database_url) == network_ledgers(net, 300, stopped_at)
    assert stored_event_ids(database_url) == network_event_ids(net, 300, stopped_at)
