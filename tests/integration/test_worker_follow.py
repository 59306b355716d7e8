"""The worker against the simulated network, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from stellar_sdk import StrKey

from stellar_reconciler.decode import decode_scval_b64
from stellar_reconciler.simnet import (
    FaultKind,
    SimNetConfig,
    SimNetwork,
    events_scan_covers,
    ledgers_page_covers,
    serve_in_thread,
)
from tests.integration.harness import (
    network_event_ids,
    network_ledgers,
    running_service,
    settings_for,
    stored_event_ids,
    stored_ledgers,
    wait_for,
)


async def test_recovery_after_ledger_two_fails_with_http_500(database_url: str) -> None:
    """Latest ledger 2, ledger 2 failing with HTTP 500: checkpoint 1 first, then 2, each once."""
    net = SimNetwork(SimNetConfig(seed=3, first_ledger=1, prebuilt_ledgers=2, events_per_ledger=4))
    for method, covers in (
        ("getLedgers", ledgers_page_covers(2)),
        ("getEvents", events_scan_covers(2)),
    ):
        net.faults.add(FaultKind.HTTP_500, method=method, when=covers, times=None)
    with serve_in_thread(net) as url:
        async with running_service(settings_for(database_url, url, start_ledger="1")) as (
            service,
            _,
        ):
            await wait_for(lambda: service.status.poll_failing, what="the failing poll")
            assert service.store.checkpoint().ledger == 1
            assert stored_ledgers(database_url) == network_ledgers(net, 1, 1)
            assert stored_event_ids(database_url) == network_event_ids(net, 1, 1)
            assert service.status.health()["status"] == "degraded"

            net.faults.clear()
            await wait_for(lambda: service.store.checkpoint().ledger == 2, what="checkpoint 2")
            assert stored_ledgers(database_url) == network_ledgers(net, 1, 2)
            assert stored_event_ids(database_url) == network_event_ids(net, 1, 2)
            await wait_for(lambda: service.status.health()["healthy"], what="healthy again")


async def test_catch_up_then_follow_stores_every_event_once(database_url: str) -> None:
    """Catching up 400 ledgers, then following new ones, stores exactly what the network emitted."""
    net = SimNetwork(
        SimNetConfig(seed=5, first_ledger=5000, prebuilt_ledgers=400, events_per_ledger=25)
    )
    with serve_in_thread(net) as url:
        async with running_service(settings_for(database_url, url)) as (service, _):
            await wait_for(
                lambda: service.status.last_processed_ledger == net.latest_ledger, what="catch-up"
            )
            net.close_ledgers(7)
            await wait_for(
                lambda: service.status.last_processed_ledger == net.latest_ledger, what="follow"
            )
            last = net.latest_ledger
    assert stored_event_ids(database_url) == network_event_ids(net, 5000, last)
    assert stored_ledgers(database_url) == network_ledgers(net, 5000, last)


async def test_idle_polls_change_no_counters(database_url: str) -> None:
    """Once synced, polls that find nothing new leave processed and event counters alone."""
    net = SimNetwork(SimNetConfig(seed=6, first_ledger=100, prebuilt_ledgers=30))
    with serve_in_thread(net) as url:
        async with running_service(settings_for(database_url, url)) as (service, _):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            metrics = service.metrics
            before = (metrics.processed_ledgers._value.get(), metrics.events_indexed._value.get())
            polls = net.requests_served.get("getHealth", 0)
            await wait_for(
                lambda: net.requests_served.get("getHealth", 0) >= polls + 10, what="10 idle polls"
            )
            after = (metrics.processed_ledgers._value.get(), metrics.events_indexed._value.get())
            assert before == after == (30, service.store.event_count())


async def test_sparse_events_tens_of_thousands_of_ledgers_apart_are_all_found(
    database_url: str,
) -> None:
    """Events 25,000 ledgers apart (so most getEvents pages are empty) are all stored."""
    net = SimNetwork(
        SimNetConfig(
            seed=8,
            first_ledger=10,
            prebuilt_ledgers=60_001,
            events_per_ledger=3,
            event_every=25_000,
        )
    )
    expected = network_event_ids(net, 10, net.latest_ledger)
    assert {int(i[:19]) >> 32 for i in expected} == {10, 25_010, 50_010}
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, batch_max_ledgers=10_000)
        async with running_service(settings) as (service, _):
            await wait_for(
                lambda: service.status.last_processed_ledger == net.latest_ledger, 120, "catch-up"
            )
    assert stored_event_ids(database_url) == expected
    assert len(stored_ledgers(database_url)) == 60_001


@pytest.mark.parametrize(
    "fault", [FaultKind.HTTP_503, FaultKind.HTTP_429, FaultKind.DROP, FaultKind.RPC_ERROR]
)
async def test_transient_faults_mid_catch_up_lose_nothing(
    database_url: str, fault: FaultKind
) -> None:
    """Bursts of transient faults during catch-up are retried and the result is still exact."""
    net = SimNetwork(
        SimNetConfig(seed=9, first_ledger=700, prebuilt_ledgers=300, events_per_ledger=10)
    )
    net.faults.add(fault, times=2)
    net.faults.add(fault, method="getEvents", when=events_scan_covers(850), times=2)
    net.faults.add(fault, method="getLedgers", when=ledgers_page_covers(900), times=2)
    with serve_in_thread(net) as url:
        async with running_service(settings_for(database_url, url)) as (service, _):
            await wait_for(
                lambda: service.status.last_processed_ledger == net.latest_ledger, what="catch-up"
            )
    assert stored_event_ids(database_url) == network_event_ids(net, 700, net.latest_ledger)
    assert stored_ledgers(database_url) == network_ledgers(net, 700, net.latest_ledger)


async def test_contract_and_topic_filters_index_only_what_they_select(database_url: str) -> None:
    """Seven CONTRACT_IDS (split over two filters) with EVENT_TOPICS select exactly the
    network's transfer and mint events of the token contract."""
    net = SimNetwork(
        SimNetConfig(seed=10, first_ledger=400, prebuilt_ledgers=120, events_per_ledger=12)
    )
    others = [StrKey.encode_contract(bytes([i]) * 32) for i in range(6)]
    contracts = ",".join([*others[:3], net.token_contract_id, *others[3:]])
    with serve_in_thread(net) as url:
        settings = settings_for(
            database_url, url, contract_ids=contracts, event_topics="transfer,**;mint,**"
        )
        async with running_service(settings) as (service, _):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
    wanted = [
        e["id"]
        for e in net.record_events(400, net.latest_ledger)
        if e["contractId"] == net.token_contract_id
        and decode_scval_b64(e["topic"][0]) in ("transfer", "mint")
    ]
    assert wanted and stored_event_ids(database_url) == wanted
    assert len(stored_ledgers(database_url)) == 120
