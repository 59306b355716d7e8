"""The reported scenario, end to end: a gap consent given with no gap is refused, and when
the RPC's window passes the checkpoint nothing is skipped until a consent names that gap."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from stellar_reconciler.service import Service
from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from tests.integration.harness import (
    network_event_ids,
    running_service,
    settings_for,
    stored_event_ids,
    wait_for,
)

ADMIN = "admin-token-0123456789"
AUTH = {"authorization": f"Bearer {ADMIN}"}
RECONCILER = Path(sys.executable).parent / "reconciler"


def acknowledge_gap_cli(database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RECONCILER), "acknowledge-gap", "--through-oldest"],
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def polls_after(net: SimNetwork, count: int) -> None:
    """Wait until the worker has asked the RPC for its health `count` more times."""
    seen = net.requests_served.get("getHealth", 0)
    await wait_for(
        lambda: net.requests_served.get("getHealth", 0) >= seen + count, what="more polls"
    )


async def pass_the_window(
    http: httpx.AsyncClient, service: Service, net: SimNetwork, closes: int, window: int
) -> None:
    """With the worker paused, close ledgers and shrink the RPC's window past the checkpoint."""
    assert (await http.post("/api/worker/pause", headers=AUTH)).status_code == 200
    net.close_ledgers(closes)
    net.set_retention_window(window)
    assert (await http.post("/api/worker/resume", headers=AUTH)).status_code == 200
    await wait_for(lambda: service.status.blocking_reason, what="the retention gap")


async def consent(http: httpx.AsyncClient) -> httpx.Response:
    return await http.post("/api/gaps/acknowledge", json={"through_oldest": True}, headers=AUTH)


async def gaps(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/api/gaps")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_consent_without_gap_is_refused_and_a_passed_window_blocks_until_one_names_it(
    database_url: str,
) -> None:
    """Synced at 2959; consent twice with no gap: 409 both times (CLI: exit 1, rejected), nothing
    recorded. The window then passes the checkpoint: 503 with exactly 2960-2969, nothing
    skipped, even after a consent is given and revoked. A consent naming the gap skips exactly
    2960-2969, recorded as a resolved retention_gap with who and when; the next time the
    window passes, the used consent skips nothing."""
    net = SimNetwork(
        SimNetConfig(seed=61, first_ledger=2900, prebuilt_ledgers=60, events_per_ledger=3)
    )
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN)
        async with (
            running_service(settings) as (service, base),
            httpx.AsyncClient(base_url=base) as http,
        ):
            await wait_for(lambda: service.status.last_processed_ledger == 2959, what="sync")
            for _ in range(2):
                refused = await consent(http)
                assert refused.status_code == 409, refused.text
                assert "no retention gap is pending" in refused.json()["error"]
            for body in ({"through_ledger": 2**70}, {"through_ledger": 0}):
                invalid = await http.post("/api/gaps/acknowledge", json=body, headers=AUTH)
                assert invalid.status_code == 422, invalid.text
            cli = await asyncio.to_thread(acknowledge_gap_cli, database_url)
            assert cli.returncode == 1, cli.stderr
            assert "refused: no retention gap is pending" in cli.stderr
            listed = await gaps(http)
            assert listed["consents"] == [] and listed["retention_gap"] is None

            await pass_the_window(http, service, net, closes=50, window=40)
            assert net.oldest_ledger == 2970
            health = await http.get("/health")
            assert health.status_code == 503
            detail = health.json()["detail"]
            assert detail["kind"] == "retention_gap"
            assert (detail["first_missing_ledger"], detail["last_missing_ledger"]) == (2960, 2969)
            assert service.store.checkpoint().ledger == 2959
            assert service.store.ledger_bounds() == (2900, 2959, 60)
            listed = await gaps(http)
            assert listed["retention_gap"]["first_ledger"] == 2960
            assert listed["retention_gap"]["last_ledger"] == 2969

            # Given and revoked while the worker is paused: the worker skips nothing.
            assert (await http.post("/api/worker/pause", headers=AUTH)).status_code == 200
            given = await consent(http)
            assert given.status_code == 200, given.text
            withdrawn_id = given.json()["consent_id"]
            assert given.json()["consent"]["state"] == "pending"
            revoked = await http.delete(f"/api/gaps/consents/{withdrawn_id}", headers=AUTH)
            assert revoked.status_code == 200 and revoked.json()["consent"]["state"] == "revoked"
            assert (await http.post("/api/worker/resume", headers=AUTH)).status_code == 200
            await polls_after(net, 3)
            assert service.store.checkpoint().ledger == 2959

            accepted = await consent(http)
            assert accepted.status_code == 200, accepted.text
            consent_id = accepted.json()["consent_id"]
            await wait_for(lambda: service.status.last_processed_ledger == 3009, what="moving on")
            assert (await http.get("/health")).status_code == 200
            gaps_now = service.store.gaps.acknowledged()
            assert [(g.first_ledger, g.last_ledger) for g in gaps_now] == [(2960, 2969)]
            [lost] = service.store.discrepancies.listing("retention_gap")
            assert (lost["first_ledger"], lost["last_ledger"], lost["open"]) == (2960, 2969, False)
            requested_at = accepted.json()["consent"]["requested_at"]
            assert lost["resolution"].startswith("accepted by admin at ")
            assert f" at {requested_at}: ledgers 2960-2969 skipped" in lost["resolution"]
            listed = await gaps(http)
            states = {c["id"]: c["state"] for c in listed["consents"]}
            assert states == {consent_id: "used", withdrawn_id: "revoked"}
            [used] = [c for c in listed["consents"] if c["id"] == consent_id]
            assert used["skipped"] == {"first_ledger": 2960, "last_ledger": 2969}

            # Used once: the next time the window passes, the worker stops again.
            await pass_the_window(http, service, net, closes=30, window=20)
            assert service.status.health()["detail"]["first_missing_ledger"] == 3010
            await polls_after(net, 3)
            assert service.store.checkpoint().ledger == 3009

            again = await http.delete(f"/api/gaps/consents/{consent_id}", headers=AUTH)
            assert again.status_code == 409 and "already carried out" in again.json()["error"]
            assert (await http.delete("/api/gaps/consents/999", headers=AUTH)).status_code == 404
            assert (await http.delete(f"/api/gaps/consents/{consent_id}")).status_code == 401
            audit = service.store.audit.listing()
            consent_actions = [e for e in audit if "gap" in e["action"]]
            # Newest first.
            assert [e["action"] for e in consent_actions] == [
                "consent_to_gap",
                "revoke_gap_consent",
                "consent_to_gap",
            ]
            assert all(e["remote_addr"] == "127.0.0.1" for e in consent_actions)
    expected = network_event_ids(net, 2900, 2959) + network_event_ids(net, 2970, 3009)
    assert stored_event_ids(database_url) == sorted(expected)
