"""Operator endpoints: the admin token on every state-changing route, and what each one does."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.store.discrepancies import NewDiscrepancy
from tests.integration.harness import (
    network_event_ids,
    running_service,
    settings_for,
    stored_event_ids,
    wait_for,
)

ADMIN = "admin-token-0123456789"
READER = "read-token-0123456789"

# Every state-changing endpoint with a body it would accept.
STATE_CHANGING: list[tuple[str, dict[str, Any] | None]] = [
    ("/api/discrepancies/1/resolve", {"note": "checked by hand"}),
    ("/api/verify", {"from_ledger": 60, "to_ledger": 70}),
    ("/api/rescans", {"from_ledger": 60, "to_ledger": 70}),
    ("/api/backfills", {"from_ledger": 60, "to_ledger": 70}),
    ("/api/worker/pause", None),
    ("/api/worker/resume", None),
    ("/api/worker/restart", None),
    ("/api/gaps/acknowledge", {"through_oldest": True}),
]


def network() -> SimNetwork:
    return SimNetwork(
        SimNetConfig(seed=51, first_ledger=50, prebuilt_ledgers=60, events_per_ledger=4)
    )


async def post(http: httpx.AsyncClient, path: str, body: Any, token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return await http.post(path, json=body, headers=headers)


async def test_state_changing_endpoints_are_disabled_without_admin_token(database_url: str) -> None:
    """With no ADMIN_TOKEN configured every state-changing endpoint answers 403, token or not."""
    net = network()
    with serve_in_thread(net) as url:
        async with (
            running_service(settings_for(database_url, url)) as (service, base),
            httpx.AsyncClient(base_url=base) as http,
        ):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            for path, body in STATE_CHANGING:
                for token in (None, ADMIN):
                    response = await post(http, path, body, token)
                    assert response.status_code == 403, (path, token, response.text)
                    assert "ADMIN_TOKEN" in response.json()["error"]


async def test_admin_token_is_required_and_checked_on_every_endpoint(database_url: str) -> None:
    """Missing or wrong tokens get 401 everywhere; the right one is let through and audited."""
    net = network()
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN)
        async with (
            running_service(settings) as (service, base),
            httpx.AsyncClient(base_url=base) as http,
        ):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            await asyncio.to_thread(
                service.store.discrepancies.open,
                NewDiscrepancy("unexpected", "k1", "an event nobody expected"),
            )
            for path, body in STATE_CHANGING:
                for token in (None, "wrong-token-0123456789", READER):
                    response = await post(http, path, body, token)
                    assert response.status_code == 401, (path, token, response.text)
                    assert response.headers["www-authenticate"] == "Bearer"
                response = await post(http, path, body, ADMIN)
                # Let through; a gap consent with no gap pending is then refused (409).
                allowed = (409,) if path == "/api/gaps/acknowledge" else (200, 202)
                assert response.status_code in allowed, (path, response.text)
            actions = [e["action"] for e in service.store.audit.listing()]
            assert sorted(actions) == sorted(
                [
                    "resolve_discrepancy",
                    "verify",
                    "rescan",
                    "backfill",
                    "pause_worker",
                    "resume_worker",
                    "restart_worker",
                ]
            )
            # The role only: nothing derived from the token can be tested against guesses.
            assert all(e["actor"] == "admin" for e in service.store.audit.listing())


async def test_read_token_guards_reads_but_not_health_or_metrics(database_url: str) -> None:
    """With READ_TOKEN set, /api reads (the event stream too) need it (or the admin token);
    monitors stay open."""
    net = network()
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN, read_token=READER)
        async with (
            running_service(settings) as (service, base),
            httpx.AsyncClient(base_url=base) as http,
        ):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            for path in (
                "/api/events",
                "/api/ledgers",
                "/api/status",
                "/api/discrepancies",
                "/api/gaps",
                "/api/jobs",
                "/api/audit",
            ):
                assert (await http.get(path)).status_code == 401, path
                for token in (READER, ADMIN):
                    ok = await http.get(path, headers={"authorization": f"Bearer {token}"})
                    assert ok.status_code == 200, (path, ok.text)
            # The event stream never ends: its status line is all there is to check.
            assert (await http.get("/api/events/stream")).status_code == 401
            for token in (READER, ADMIN):
                headers = {"authorization": f"Bearer {token}"}
                async with http.stream("GET", "/api/events/stream", headers=headers) as stream:
                    assert stream.status_code == 200
            assert (await http.get("/health")).status_code == 200
            assert (await http.get("/metrics")).status_code == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"from_ledger": 70, "to_ledger": 60}, "from_ledger"),
        ({"from_ledger": 60, "to_ledger": 99999}, "to_ledger"),
        ({"from_ledger": 0, "to_ledger": 60}, "from_ledger"),
        ({"from_ledger": "x", "to_ledger": 60}, "from_ledger"),
        ({"to_ledger": 60}, "from_ledger"),
    ],
)
async def test_rescan_range_is_validated(
    database_url: str, body: dict[str, Any], fragment: str
) -> None:
    """A rescan range that is reversed, not stored yet or malformed is a 422 saying which field."""
    net = network()
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN)
        async with (
            running_service(settings) as (service, base),
            httpx.AsyncClient(base_url=base) as http,
        ):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            response = await post(http, "/api/rescans", body, ADMIN)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["error"]


async def test_rescan_reindexes_and_reports_progress_to_done(database_url: str) -> None:
    """A rescan job re-reads the range, leaves exactly the network's events, and ends at 100%."""
    net = network()
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN, verify_every_ledgers=0)
        async with (
            running_service(settings) as (service, base),
            httpx.AsyncClient(base_url=base) as http,
        ):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            job = (
                await post(http, "/api/rescans", {"from_ledger": 55, "to_ledger": 100}, ADMIN)
            ).json()
            assert job["total_ledgers"] == 46

            def finished() -> bool:
                current = service.controls.job(job["id"])
                return current is not None and current.state in ("done", "failed")

            await wait_for(finished, what="the rescan")
            final = (await http.get(f"/api/jobs/{job['id']}")).json()
            assert final["state"] == "done" and final["progress"] == 1.0
            assert final["result"]["ledgers"] == 46
    assert stored_event_ids(database_url) == network_event_ids(net, 50, net.latest_ledger)


async def test_pause_stops_progress_and_resume_catches_up(database_url: str) -> None:
    """Paused, the worker takes no new ledgers and health says why; resumed, it catches up."""
    net = network()
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN)
        async with (
            running_service(settings) as (service, base),
            httpx.AsyncClient(base_url=base) as http,
        ):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            await post(http, "/api/worker/pause", None, ADMIN)
            paused_at = service.status.last_processed_ledger
            net.close_ledgers(5)
            polls = net.requests_served.get("getHealth", 0)
            await asyncio.sleep(0.5)
            assert service.status.last_processed_ledger == paused_at
            assert net.requests_served.get("getHealth", 0) == polls
            health = (await http.get("/health")).json()
            assert health["status"] == "degraded" and "paused" in health["reason"]
            await post(http, "/api/worker/resume", None, ADMIN)
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)


async def test_restart_keeps_http_up_and_recovers_a_halted_worker(database_url: str) -> None:
    """Restart brings a halted worker back while the HTTP server keeps answering."""
    net = network()
    net.break_chain_at(90)
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN)
        async with (
            running_service(settings) as (service, base),
            httpx.AsyncClient(base_url=base) as http,
        ):
            await wait_for(
                lambda: not service.status.worker_running and service.status.blocking_reason
            )
            assert (await http.get("/health")).status_code == 503
            response = await post(http, "/api/worker/restart", None, ADMIN)
            assert response.status_code == 202
            await wait_for(lambda: service.status.worker_running, what="a new worker")
            assert (await http.get("/api/status")).status_code == 200
            # The chain is still broken, so the new worker halts at the same ledger again.
            await wait_for(lambda: not service.status.worker_running, what="the same halt")
            assert service.store.checkpoint().ledger == 89
