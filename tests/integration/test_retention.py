"""Ledgers older than the RPC keeps, read from a SEP-54 data lake by the running service: a
start before the window, a retention gap after an outage, and a lake object that is broken."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from obstore.store import LocalStore
from sqlalchemy import select

from stellar_reconciler.lake import LakeLayout
from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.simnet.lake import damage, publish, truth
from stellar_reconciler.store import Store
from stellar_reconciler.store.schema import events
from tests.integration.harness import (
    network_ledgers,
    running_service,
    settings_for,
    stored_ledgers,
    wait_for,
)
from tests.integration.test_cli_verify import closed_port

# Small batches and partitions, so a few hundred ledgers span many objects and partitions.
LEDGERS_PER_BATCH = 8
BATCHES_PER_PARTITION = 4


def lake_for(net: SimNetwork, directory: Path, first: int, last: int) -> tuple[LocalStore, str]:
    """The network's ledgers first..last published as a lake in `directory`; store and URL."""
    directory.mkdir(exist_ok=True)
    store = LocalStore(str(directory))
    layout = LakeLayout(net.passphrase, LEDGERS_PER_BATCH, BATCHES_PER_PARTITION)
    publish(net, store, first, last, layout)
    return store, f"file://{directory}"


def stored_events(database_url: str) -> dict[str, dict[str, Any]]:
    """Every stored event by id, in the fields getEvents serves."""
    store = Store.open(database_url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(
                select(
                    events.c.id,
                    events.c.ledger,
                    events.c.contract_id,
                    events.c.type,
                    events.c.tx_hash,
                    events.c.in_successful_contract_call,
                    events.c.topics_xdr,
                    events.c.value_xdr,
                )
            ).all()
    finally:
        store.close()
    return {
        row.id: {
            "ledger": row.ledger,
            "contractId": row.contract_id,
            "type": row.type,
            "txHash": row.tx_hash,
            "inSuccessfulContractCall": row.in_successful_contract_call,
            "topic": list(row.topics_xdr),
            "value": row.value_xdr,
        }
        for row in rows
    }


def expected_events(net: SimNetwork, first: int, last: int) -> dict[str, dict[str, Any]]:
    fields = (
        "ledger",
        "contractId",
        "type",
        "txHash",
        "inSuccessfulContractCall",
        "topic",
        "value",
    )
    return {
        event_id: {name: record[name] for name in fields}
        for event_id, record in truth(net, first, last).items()
    }


def retention_gaps(database_url: str) -> list[dict[str, Any]]:
    store = Store.open(database_url)
    try:
        return store.discrepancies.listing("retention_gap")
    finally:
        store.close()


async def test_a_start_before_the_window_is_read_from_the_lake_and_meets_the_rpc_exactly(
    database_url: str, tmp_path: Path
) -> None:
    """START_LEDGER at the network's first ledger, 540 ledgers before an RPC that keeps the
    last 100: the lake supplies 1024-1563, the RPC 1564-1663; every ledger stored once with
    the network's hashes (chained across the seam), every event exactly as the truth, and no
    retention gap ever reported."""
    net = SimNetwork(
        SimNetConfig(
            seed=83,
            first_ledger=1024,
            prebuilt_ledgers=640,
            retention_window=100,
            events_per_ledger=4,
            system_event_every=7,
        )
    )
    assert (net.oldest_ledger, net.latest_ledger) == (1564, 1663)
    # The lake lags the network (as Galexie does): it stops short of the RPC's newest ledgers.
    _, lake_url = lake_for(net, tmp_path / "lake", 1024, 1599)
    with serve_in_thread(net) as url:
        settings = settings_for(
            database_url, url, start_ledger="1024", lake_url=lake_url, batch_max_ledgers=50
        )
        async with running_service(settings) as (service, _):
            await wait_for(lambda: service.status.last_processed_ledger == 1663, what="sync")
            assert service.status.blocking_reason is None
    assert stored_ledgers(database_url) == network_ledgers(net, 1024, 1663)
    stored = stored_events(database_url)
    assert len(stored) > 2000
    assert stored == expected_events(net, 1024, 1663)
    assert retention_gaps(database_url) == []


@pytest.mark.slow
async def test_fifty_thousand_ledgers_from_the_first_with_an_rpc_keeping_five_thousand(
    database_url: str, tmp_path: Path
) -> None:
    """The lake issue's scale: 50,000 ledgers, the RPC keeping the last 5,000, the service
    started at the first ledger with a lake of 64-ledger objects: every ledger and event
    stored once, field by field as the network's truth, across the seam."""
    net = SimNetwork(
        SimNetConfig(
            seed=84,
            first_ledger=1024,
            prebuilt_ledgers=50_000,
            retention_window=5_000,
            events_per_ledger=5,
        )
    )
    first, last = net.first_ledger, net.latest_ledger
    assert (last - first + 1, net.oldest_ledger) == (50_000, last - 4_999)
    lake_dir = tmp_path / "lake"
    lake_dir.mkdir()
    publish(net, LocalStore(str(lake_dir)), first, last - 100, LakeLayout(net.passphrase, 64, 64))
    with serve_in_thread(net) as url:
        settings = settings_for(
            database_url, url, start_ledger=str(first), lake_url=f"file://{lake_dir}"
        )
        async with running_service(settings) as (service, _):
            await wait_for(lambda: service.status.last_processed_ledger == last, 600, "sync")
    assert stored_ledgers(database_url) == network_ledgers(net, first, last)
    stored = stored_events(database_url)
    assert len(stored) > 200_000
    assert stored == expected_events(net, first, last)
    assert retention_gaps(database_url) == []


async def test_a_retention_gap_left_by_an_outage_is_filled_from_the_lake_and_resolved(
    database_url: str, tmp_path: Path
) -> None:
    """Synced to 1119, stopped; the window passes the checkpoint and a service without a lake
    opens a retention_gap for 1120-1263. Restarted with LAKE_URL, the gap is filled from the
    lake, the discrepancy resolved saying so, health is 200, and the stored history equals the
    network's, events included."""
    net = SimNetwork(
        SimNetConfig(seed=84, first_ledger=1024, prebuilt_ledgers=96, events_per_ledger=3)
    )
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, start_ledger="1024")
        async with running_service(settings) as (service, _):
            await wait_for(lambda: service.status.last_processed_ledger == 1119, what="sync")
        net.close_ledgers(200)
        net.set_retention_window(56)
        assert net.oldest_ledger == 1264
        async with running_service(settings) as (service, base), httpx.AsyncClient() as http:
            await wait_for(lambda: service.status.blocking_reason, what="the retention gap")
            health = await http.get(f"{base}/health")
            assert health.status_code == 503
            assert "set LAKE_URL" in health.json()["reason"]
        [gap] = retention_gaps(database_url)
        assert (gap["first_ledger"], gap["last_ledger"], gap["open"]) == (1120, 1263, True)

        _, lake_url = lake_for(net, tmp_path / "lake", 1024, 1279)
        with_lake = settings_for(database_url, url, start_ledger="1024", lake_url=lake_url)
        async with running_service(with_lake) as (service, base), httpx.AsyncClient() as http:
            await wait_for(lambda: service.status.last_processed_ledger == 1319, what="the fill")
            assert (await http.get(f"{base}/health")).status_code == 200
    [gap] = retention_gaps(database_url)
    assert gap["open"] is False
    assert gap["resolved_by"] == "auto"
    assert gap["resolution"].startswith("filled from the data lake (LAKE_URL): ledgers 1120-1263")
    assert stored_ledgers(database_url) == network_ledgers(net, 1024, 1319)
    assert stored_events(database_url) == expected_events(net, 1024, 1319)


async def test_a_corrupt_lake_object_is_named_and_nothing_of_its_batch_is_written(
    database_url: str, tmp_path: Path
) -> None:
    """One object of the lake (ledgers 1064-1071) is corrupt: the batches before it are
    stored, none of its ledgers is, health (503) and the open retention_gap name its key; once
    the object is published again the service goes on by itself to the tip, the gap resolved."""
    net = SimNetwork(
        SimNetConfig(
            seed=85,
            first_ledger=1024,
            prebuilt_ledgers=200,
            retention_window=40,
            events_per_ledger=2,
        )
    )
    lake_store, lake_url = lake_for(net, tmp_path / "lake", 1024, 1199)
    layout = LakeLayout(net.passphrase, LEDGERS_PER_BATCH, BATCHES_PER_PARTITION, extension="zst")
    broken = layout.batch_key(1064)
    damage(lake_store, broken, "corrupt")
    with serve_in_thread(net) as url:
        settings = settings_for(
            database_url, url, start_ledger="1024", lake_url=lake_url, batch_max_ledgers=8
        )
        async with running_service(settings) as (service, base), httpx.AsyncClient() as http:
            await wait_for(lambda: service.status.blocking_reason, what="the lake failure")
            health = await http.get(f"{base}/health")
            assert health.status_code == 503
            body = health.json()
            assert broken in body["reason"]
            assert body["detail"]["lake_object"] == broken
            assert service.store.checkpoint().ledger == 1063
            assert stored_ledgers(database_url) == network_ledgers(net, 1024, 1063)
            # What is lost starts after what the lake could give: a consent names 1064.
            [gap] = retention_gaps(database_url)
            assert gap["open"] and broken in gap["message"]
            assert (gap["first_ledger"], gap["last_ledger"]) == (1064, 1183)
            assert body["detail"]["first_missing_ledger"] == 1064

            publish(net, lake_store, 1064, 1071, layout)
            await wait_for(lambda: service.status.last_processed_ledger == 1223, what="the rest")
            await wait_for(lambda: service.status.blocking_reason is None, what="health")
    assert stored_ledgers(database_url) == network_ledgers(net, 1024, 1223)
    assert stored_events(database_url) == expected_events(net, 1024, 1223)
    [gap] = retention_gaps(database_url)
    assert gap["open"] is False and "data lake" in gap["resolution"]


def forked_config() -> SimNetConfig:
    """Ledgers 1024-1223; the RPC keeps 1184-1223."""
    return SimNetConfig(seed=87, first_ledger=1024, prebuilt_ledgers=200, retention_window=40)


async def test_a_lake_of_another_history_is_stopped_at_the_seam(
    database_url: str, tmp_path: Path
) -> None:
    """A lake whose ledgers chain among themselves but not into the RPC's first ledger: the
    worker halts at the seam with a chain_break naming ledger 1184, nothing of the RPC's batch
    written."""
    config = forked_config()
    net = SimNetwork(config)
    forked = SimNetwork(SimNetConfig(**{**_fields(config), "seed": 88}))
    _, forked_url = lake_for(forked, tmp_path / "forked", 1024, 1199)
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, start_ledger="1024", lake_url=forked_url)
        async with running_service(settings) as (service, base), httpx.AsyncClient() as http:
            # On PostgreSQL the worker starts once the leader's lock is taken: wait for it first.
            await wait_for(
                lambda: service.worker.ran and not service.status.worker_running, what="the halt"
            )
            health = (await http.get(f"{base}/health")).json()
            assert "hash chain broken at ledger 1184" in health["reason"]
            assert service.store.checkpoint().ledger == 1183
            [record] = service.store.discrepancies.listing("chain_break")
            assert record["open"] and record["first_ledger"] == 1184
    assert [row[0] for row in stored_ledgers(database_url)] == list(range(1024, 1184))


async def test_a_lake_of_another_network_is_refused_before_anything_is_written(
    database_url: str, tmp_path: Path
) -> None:
    """A lake whose configuration names another network: health (503) names its
    configuration object and both networks, and nothing is stored."""
    config = forked_config()
    net = SimNetwork(config)
    foreign = SimNetwork(SimNetConfig(**{**_fields(config), "network_passphrase": "Other ; 1"}))
    _, foreign_url = lake_for(foreign, tmp_path / "foreign", 1024, 1199)
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, start_ledger="1024", lake_url=foreign_url)
        async with running_service(settings) as (service, base), httpx.AsyncClient() as http:
            await wait_for(lambda: service.status.blocking_reason, what="the refusal")
            response = await http.get(f"{base}/health")
            assert response.status_code == 503
            body = response.json()
            assert body["detail"]["lake_object"] == ".config.json"
            assert "'Other ; 1'" in body["reason"] and net.passphrase in body["reason"]
            assert service.store.ledger_bounds() == (None, None, 0)


def _fields(config: SimNetConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


async def test_an_unreachable_lake_is_a_health_reason_and_nothing_is_written(
    database_url: str,
) -> None:
    """LAKE_URL on an S3 endpoint where nothing listens: health (503) says the configuration
    object could not be read, the retention_gap is recorded with it, and nothing is stored."""
    net = SimNetwork(forked_config())
    with serve_in_thread(net) as url:
        settings = settings_for(
            database_url,
            url,
            start_ledger="1024",
            lake_url="s3://lake/ledgers",
            lake_endpoint_url=f"http://127.0.0.1:{closed_port()}",
            lake_anonymous=True,
        )
        async with running_service(settings) as (service, base), httpx.AsyncClient() as http:
            await wait_for(lambda: service.status.blocking_reason, what="the lake failure")
            response = await http.get(f"{base}/health")
            assert response.status_code == 503
            assert "lake object '.config.json': could not be read" in response.json()["reason"]
            assert service.store.ledger_bounds() == (None, None, 0)
    [gap] = retention_gaps(database_url)
    assert gap["open"] and "could not be read" in gap["message"]
