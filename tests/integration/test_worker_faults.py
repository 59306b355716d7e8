"""The worker against RPC faults a retry inside one call cannot fix, and against a network
behind its database, on SQLite and PostgreSQL: it keeps failing loudly (503 with the reason)
and recovers by itself, without POST /api/worker/restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from stellar_reconciler.simnet import FaultKind, SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.status import AHEAD_POLLS
from tests.conftest import PostgresTemplate
from tests.integration.harness import (
    network_event_ids,
    network_ledgers,
    running_service,
    settings_for,
    stored_event_ids,
    stored_ledgers,
    wait_for,
)
from tests.loopback import cuttable_proxy

# Back-off caps small enough that recovery is seen in a test; the schedule is the same.
FAST_BACKOFF = {"poll_failure_max_backoff_secs": 0.2, "rpc_fault_max_backoff_secs": 0.3}


async def health(http: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    response = await http.get("/health")
    body: dict[str, Any] = response.json()
    return response.status_code, body


@pytest.mark.parametrize(
    ("fault", "options", "words"),
    [
        (FaultKind.NON_JSON, {}, "not JSON"),
        (FaultKind.EMPTY, {}, "empty body"),
        (FaultKind.TRUNCATED, {}, "cut short"),
        (FaultKind.HTTP_401, {}, "HTTP 401"),
        (FaultKind.HTTP_403, {}, "HTTP 403"),
        (FaultKind.HTTP_520, {}, "HTTP 520"),
        (FaultKind.RPC_ERROR, {"code": -32600, "message": "invalid request"}, "-32600"),
        (FaultKind.RPC_ERROR, {"code": -32601, "message": "method not found"}, "-32601"),
        (FaultKind.RPC_ERROR, {"code": -32602, "message": "invalid params"}, "-32602"),
        (FaultKind.RPC_ERROR, {"code": -32700, "message": "parse error"}, "-32700"),
    ],
)
async def test_a_fault_retries_cannot_fix_is_503_then_recovers_by_itself(
    database_url: str, fault: FaultKind, options: dict[str, Any], words: str
) -> None:
    """Mid-follow, every request failing with this fault: 503 naming it, the worker still
    running; once the RPC answers correctly again, 200 and every ledger and event once."""
    net = SimNetwork(
        SimNetConfig(seed=21, first_ledger=2, prebuilt_ledgers=20, events_per_ledger=6)
    )
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, start_ledger="2", **FAST_BACKOFF)
        async with (
            running_service(settings) as (service, base),
            httpx.AsyncClient(base_url=base, timeout=10) as http,
        ):
            await wait_for(lambda: service.status.last_processed_ledger == 21, what="21")
            net.faults.add(fault, times=None, **options)
            net.close_ledgers(10)
            _, body = await _wait_health(
                http, lambda s, b: s == 503 and "failing" in (b["reason"] or "")
            )
            assert body["reason"].startswith("RPC failing: ") and words in body["reason"]
            assert url in body["reason"] and body["status"] == "degraded"
            # Failed polls keep coming: the worker has not halted waiting for a human.
            failures = service.worker.outage.failures
            await wait_for(lambda: service.worker.outage.failures >= failures + 2, 30)
            assert service.status.worker_running and service.status.blocking_reason is None

            net.faults.clear()
            _, body = await _wait_health(
                http, lambda s, b: s == 200 and b["last_processed_ledger"] == 31
            )
            assert body["status"] == "synced" and service.worker.outage.failures == 0
    assert stored_ledgers(database_url) == network_ledgers(net, 2, 31)
    assert stored_event_ids(database_url) == network_event_ids(net, 2, 31)


async def test_a_burst_of_json_rpc_errors_passes_without_a_human(database_url: str) -> None:
    """A 1.5-second burst of -32602 on getEvents during catch-up: 503 while it lasts, then
    caught up with no gap and no duplicate, with no one clearing anything."""
    net = SimNetwork(
        SimNetConfig(seed=22, first_ledger=2, prebuilt_ledgers=60, events_per_ledger=6)
    )
    rule = net.faults.add(
        FaultKind.RPC_ERROR, method="getEvents", code=-32602, times=None, for_secs=1.5
    )
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, start_ledger="2", **FAST_BACKOFF)
        async with (
            running_service(settings) as (_, base),
            httpx.AsyncClient(base_url=base, timeout=10) as http,
        ):
            await _wait_health(http, lambda s, b: s == 503 and "-32602" in (b["reason"] or ""))
            await _wait_health(http, lambda s, b: s == 200 and b["last_processed_ledger"] == 61)
    assert rule.fired >= 2
    assert stored_ledgers(database_url) == network_ledgers(net, 2, 61)
    assert stored_event_ids(database_url) == network_event_ids(net, 2, 61)


async def test_a_get_health_that_hangs_past_the_stall_threshold_is_a_stall(tmp_path: Path) -> None:
    """A synced service whose getHealth hangs (15 s, under a 30 s timeout): 'stalled' with the
    call and the URL once 2 x poll interval + 10 s pass, the last known tip kept; healthy
    again when the answer comes."""
    net = SimNetwork(SimNetConfig(seed=26, first_ledger=2, prebuilt_ledgers=10))
    with serve_in_thread(net) as url:
        settings = settings_for(
            f"sqlite:///{tmp_path / 'r.db'}", url, start_ledger="2", rpc_timeout_secs=30
        )
        async with (
            running_service(settings) as (service, base),
            httpx.AsyncClient(base_url=base, timeout=10) as http,
        ):
            await wait_for(lambda: service.status.last_processed_ledger == 11, what="11")
            net.faults.add(FaultKind.SLOW, method="getHealth", delay=15)
            _, body = await _wait_health(
                http, lambda s, b: s == 503 and b["status"] == "stalled", within=30
            )
            assert body["reason"].startswith(f"RPC stalled: getHealth to {url} has not answered")
            assert body["latest_ledger"] == 11 and body["ledger_lag"] == 0
            await _wait_health(http, lambda s, b: s == 200, within=30)


@pytest.mark.postgres
async def test_a_database_outage_is_blamed_on_the_database_and_heals(
    postgres_template: PostgresTemplate,
) -> None:
    """PostgreSQL cut off mid-follow (through a loopback proxy): 503 'database failing: ...',
    not 'RPC failing', whether the worker saw the cut first or the leader's lock session
    ended with it (the replica then stands by, blaming the database); once it is back, 200
    and every ledger and event once, no restart."""
    direct_url = postgres_template.clone()
    net = SimNetwork(
        SimNetConfig(seed=25, first_ledger=2, prebuilt_ledgers=20, events_per_ledger=4)
    )
    try:
        with cuttable_proxy(5432) as proxy, serve_in_thread(net) as rpc_url:
            proxied = direct_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
            assert proxied != direct_url
            settings = settings_for(proxied, rpc_url, start_ledger="2", **FAST_BACKOFF)
            async with (
                running_service(settings) as (service, base),
                httpx.AsyncClient(base_url=base, timeout=10) as http,
            ):
                await wait_for(lambda: service.status.last_processed_ledger == 21, what="21")
                proxy.cut()
                net.close_ledgers(5)
                _, body = await _wait_health(
                    http, lambda s, b: s == 503 and "failing" in (b["reason"] or "")
                )
                assert body["reason"].startswith("database failing: "), body["reason"]
                assert service.status.worker_running or body["role"] == "standby", body
                proxy.restore()
                await _wait_health(http, lambda s, b: s == 200 and b["last_processed_ledger"] == 26)
        assert stored_ledgers(direct_url) == network_ledgers(net, 2, 26)
        assert stored_event_ids(direct_url) == network_event_ids(net, 2, 26)
    finally:
        postgres_template.drop(direct_url)


async def test_a_database_ahead_of_the_network_is_503_naming_both_ledgers(
    database_url: str,
) -> None:
    """A database filled up to ledger 1,029 run against a (reset) network whose latest ledger
    is 11: healthy for the first polls, then 503 with both numbers and the likely causes,
    and a lag that is unknown rather than 0."""
    before = SimNetwork(SimNetConfig(seed=23, first_ledger=1000, prebuilt_ledgers=30))
    with serve_in_thread(before) as url:
        async with running_service(settings_for(database_url, url)) as (service, _):
            await wait_for(lambda: service.status.last_processed_ledger == 1029, what="1029")
    reset = SimNetwork(SimNetConfig(seed=24, first_ledger=2, prebuilt_ledgers=10))
    with serve_in_thread(reset) as url:
        async with (
            running_service(settings_for(database_url, url)) as (
                service,
                base,
            ),
            httpx.AsyncClient(base_url=base, timeout=10) as http,
        ):
            _, body = await _wait_health(
                http, lambda s, b: s == 503 and "ahead" in (b["reason"] or "")
            )
    assert service.status.ahead_polls >= AHEAD_POLLS, body
    assert "ledger 1029" in body["reason"] and "latest ledger (11)" in body["reason"]
    assert "reset" in body["reason"] and "STELLAR_RPC_URL" in body["reason"]
    assert body["ledger_lag"] is None and body["latest_ledger"] == 11


async def _wait_health(
    http: httpx.AsyncClient, accept: Callable[[int, dict[str, Any]], Any], within: float = 60
) -> tuple[int, dict[str, Any]]:
    """Poll /health until `accept(status_code, body)` holds; that answer."""
    deadline = time.monotonic() + within
    while True:
        answer = await health(http)
        if accept(*answer):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"/health never matched within {within}s; last: {answer}")
        await asyncio.sleep(0.02)
