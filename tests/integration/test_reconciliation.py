"""Reconciliation against a lying network: every tamper mode is detected, repaired or reported."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.store import Store
from stellar_reconciler.store.schema import events, ledgers
from tests.integration.harness import (
    network_event_ids,
    network_ledgers,
    running_service,
    settings_for,
    stored_event_ids,
    stored_ledgers,
    wait_for,
)
from tests.integration.test_cli import reconciler


def discrepancies(store: Store, kind: str) -> list[dict[str, Any]]:
    return store.discrepancies.listing(kind)


def stored_value(database_url: str, event_id: str) -> str:
    store = Store.open(database_url)
    try:
        with store.engine.connect() as conn:
            return str(
                conn.execute(
                    events.select()
                    .with_only_columns(events.c.value_xdr)
                    .where(events.c.id == event_id)
                ).scalar_one()
            )
    finally:
        store.close()


def small_network(seed: int, **overrides: Any) -> SimNetwork:
    config = {"seed": seed, "first_ledger": 100, "prebuilt_ledgers": 200, "events_per_ledger": 6}
    return SimNetwork(SimNetConfig(**{**config, **overrides}))


async def test_dropped_event_is_found_repaired_and_closed(database_url: str) -> None:
    """An event left out of the first answer is found by re-verification, re-indexed in one
    transaction, and its source_mismatch discrepancy closed with the repair recorded."""
    net = small_network(41)
    dropped = net.drop_event_at(150, 2)
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, verify_every_ledgers=64)
        async with running_service(settings) as (service, _):
            await wait_for(lambda: service.store.marker("verified") == 291, what="verification")
            [found] = discrepancies(service.store, "source_mismatch")
            assert found["open"] is False and found["resolved_by"] == "auto"
            assert "second read matched" in found["resolution"]
            assert found["first_ledger"] <= 150 <= found["last_ledger"]
            assert found["found"]["stored_differs"]["missing"] == 1
            assert dropped in str(found["found"])
            assert service.status.health()["healthy"]
    assert stored_event_ids(database_url) == network_event_ids(net, 100, 299)


async def test_payload_changed_on_second_read_is_repaired_and_closed(database_url: str) -> None:
    """An event served with another value on the second read is re-indexed with what the
    network now says, and the repair is proven by a third read."""
    net = small_network(42)
    altered = net.alter_event(net.event_id_at(170, 1))
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, verify_every_ledgers=64)
        async with running_service(settings) as (service, _):
            first_value = None
            await wait_for(lambda: service.store.checkpoint().ledger == 299, what="catch-up")
            await wait_for(lambda: service.store.marker("verified") == 291, what="verification")
            [found] = discrepancies(service.store, "source_mismatch")
            assert found["open"] is False and found["resolved_by"] == "auto"
            assert found["found"]["stored_differs"]["changed"] == 1
            assert altered in str(found["found"])
            first_value = net.record_events(170, 170)[1]["value"]
            assert stored_value(database_url, altered) != first_value
            assert service.status.health()["healthy"]


async def test_chain_break_halts_with_503_and_both_hashes(database_url: str) -> None:
    """A ledger whose previous hash is not the stored hash halts the worker: 503 and a
    chain_break discrepancy naming both hashes."""
    net = small_network(43)
    net.break_chain_at(250)
    with serve_in_thread(net) as url:
        async with running_service(settings_for(database_url, url)) as (service, base):
            await wait_for(
                lambda: not service.status.worker_running and service.status.blocking_reason
            )
            async with httpx.AsyncClient(base_url=base) as http:
                response = await http.get("/health")
            assert response.status_code == 503
            assert "hash chain broken at ledger 250" in response.json()["reason"]
            assert service.store.checkpoint().ledger == 249
            [breaks] = discrepancies(service.store, "chain_break")
            stored_249 = service.store.ledger(249)
            assert stored_249 is not None
            assert breaks["expected"]["previous_hash"] == stored_249.hash
            served = net.record_ledgers(250, 250)[0]["previousLedgerHash"]
            assert breaks["found"]["previous_hash"] == served != stored_249.hash
            assert breaks["open"] is True


async def test_retention_loss_becomes_retention_gap_with_exact_range(database_url: str) -> None:
    """Missing ledgers the RPC no longer keeps become a retention_gap with the exact range,
    while missing ledgers it still has are filled."""
    net = small_network(44)
    with serve_in_thread(net) as url:
        async with running_service(settings_for(database_url, url, verify_every_ledgers=0)) as (
            service,
            _,
        ):
            await wait_for(lambda: service.store.checkpoint().ledger == 299)
            with service.store.engine.begin() as conn:
                for low, high in ((120, 129), (260, 264)):
                    conn.execute(events.delete().where(events.c.ledger.between(low, high)))
                    conn.execute(ledgers.delete().where(ledgers.c.sequence.between(low, high)))
            net.set_retention_window(100)
            assert net.oldest_ledger == 200
            tip = await service.rpc.get_health()
            report = await service.maintenance.gaps.repair(tip)
            assert report.retention_gaps == [(120, 129)]
            assert report.gaps_filled == [(260, 264)]
            [lost] = discrepancies(service.store, "retention_gap")
            assert (lost["first_ledger"], lost["last_ledger"]) == (120, 129) and lost["open"]
            [filled] = discrepancies(service.store, "gap")
            assert (filled["first_ledger"], filled["last_ledger"]) == (260, 264)
            assert filled["open"] is False
    assert [r for r in stored_ledgers(database_url) if 260 <= r[0] <= 264] == network_ledgers(
        net, 260, 264
    )


async def test_punched_gap_is_found_and_filled_by_reconciler_verify(database_url: str) -> None:
    """Rows deleted by hand are found by `reconciler verify` and filled, events included."""
    net = small_network(45)
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, verify_every_ledgers=0)
        async with running_service(settings) as (service, _):
            await wait_for(lambda: service.store.checkpoint().ledger == 299)
        store = Store.open(database_url)
        with store.engine.begin() as conn:
            conn.execute(events.delete().where(events.c.ledger.between(150, 159)))
            conn.execute(ledgers.delete().where(ledgers.c.sequence.between(150, 159)))
            conn.execute(ledgers.delete().where(ledgers.c.sequence == 201))
        assert store.gaps.find() == [(150, 159), (201, 201)]
        store.close()
        env = {"DATABASE_URL": database_url, "STELLAR_RPC_URL": url}
        result = await asyncio.to_thread(reconciler, "verify", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "150-159, 201" in result.stdout  # gaps filled, as ranges
    assert stored_ledgers(database_url) == network_ledgers(net, 100, 299)
    assert stored_event_ids(database_url) == network_event_ids(net, 100, 299)


async def test_verify_job_over_the_api_reports_progress(database_url: str) -> None:
    """POST /api/verify runs as a job whose progress reaches 100% and whose result is clean."""
    net = small_network(46)
    token = "t" * 24
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=token, verify_every_ledgers=0)
        async with (
            running_service(settings) as (service, base),
            httpx.AsyncClient(base_url=base, headers={"authorization": f"Bearer {token}"}) as http,
        ):
            await wait_for(lambda: service.store.checkpoint().ledger == 299)
            job = (
                await http.post("/api/verify", json={"from_ledger": 110, "to_ledger": 289})
            ).json()
            assert job["state"] in ("queued", "running") and job["total_ledgers"] == 180

            async def finished() -> dict[str, Any]:
                return (await http.get(f"/api/jobs/{job['id']}")).json()

            done: dict[str, Any] = {}
            for _ in range(500):
                done = await finished()
                if done["state"] in ("done", "failed"):
                    break
                await asyncio.sleep(0.02)
            assert done["state"] == "done" and done["progress"] == 1.0
            assert done["result"]["clean"] is True and done["result"]["ledgers_checked"] == 180
