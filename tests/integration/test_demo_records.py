"""The demo's expected records, posted to the real service against the simulated network on
SQLite and PostgreSQL, end in the status each was built for: every status there is."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from stellar_reconciler.decode import decode_scval_b64
from stellar_reconciler.demo import demo_network_config, demo_settings
from stellar_reconciler.demo_records import load_demo_records
from stellar_reconciler.matching import CANCELLED, STATUSES
from stellar_reconciler.simnet import SimNetwork, serve_in_thread
from tests.integration.harness import settings_for, wait_for
from tests.integration.test_expectations import ADMIN, service_with_expectations
from tests.integration.test_outcomes import wait_for_async


async def test_demo_records_reach_every_status_they_were_built_for(database_url: str) -> None:
    """On the demo's network (its token contract upgraded near the end of the history):
    matched (one within tolerance), amount_mismatch, missing_expected, failed_on_chain,
    not_found, pending, partially_matched (instalments so far, one still due) and
    amount_unreadable (paid after the upgrade) each appear, every record exactly as built;
    each explains. Only cancelled is left out: no record is built cancelled, one is cancelled.
    The upgrade opens one shape_changed, from the first transfer after it: i128 to string."""
    net = SimNetwork(demo_network_config(history=80, ledger_interval=None, events_per_ledger=20))
    with serve_in_thread(net) as url:
        settings = demo_settings(settings_for(database_url, url, admin_token=ADMIN), net, url)
        async with (
            service_with_expectations(settings) as (service, base, _),
            httpx.AsyncClient(timeout=10) as http,
        ):
            await wait_for(
                lambda: service.status.last_processed_ledger == net.latest_ledger, 30, "catch-up"
            )
            book = await asyncio.to_thread(load_demo_records, net, service.store, net.latest_ledger)

            async def statuses() -> dict[str, str] | None:
                listed = (await http.get(f"{base}/api/expectations?limit=100")).json()
                found = {r["external_id"]: r["status"] for r in listed["expectations"]}
                return found if found == book.expected else None

            final = await wait_for_async(statuses)
            explained: dict[str, Any] = {}
            evidence: dict[str, Any] = {}
            for external_id in final:
                response = await http.get(f"{base}/api/expectations/{external_id}/explain")
                evidence[external_id] = response.json()
                explained[external_id] = evidence[external_id]["verdict"]
            records = f"{base}/api/expectations"
            plan = (await http.get(f"{records}/demo/plan/4001-instalments")).json()
            upgraded = (await http.get(f"{records}/demo/invoice/1006-upgraded")).json()
            shape_changes = (await http.get(f"{base}/api/discrepancies?kind=shape_changed")).json()
    assert set(final.values()) == set(STATUSES) - {CANCELLED}
    assert sum(1 for s in final.values() if s == "matched") == 3
    tolerant = explained["demo/invoice/1003-fx"]
    assert "within tolerance (difference -3)" in tolerant["summary"]
    assert all(v["status"] == final[k] for k, v in explained.items())
    assert len(plan["event_ids"]) >= 2
    assert int(plan["outstanding_amount"]) > 0
    assert int(plan["settled_amount"]) + int(plan["outstanding_amount"]) == int(plan["amount"])
    assert upgraded["unreadable_event_id"] is not None
    assert "string" in upgraded["unreadable_reason"]
    # Each of the two explains itself: the instalments taken, the unreadable event named.
    plan_evidence = evidence["demo/plan/4001-instalments"]
    assert "outstanding" in plan_evidence["verdict"]["summary"]
    taken = [c["event"]["id"] for c in plan_evidence["candidates"] if c["verdict"] == "taken"]
    assert sorted(taken) == sorted(plan["event_ids"])
    assert plan_evidence["chosen"]["event_id"] == max(plan["event_ids"])
    unreadable_evidence = evidence["demo/invoice/1006-upgraded"]
    assert "cannot be read" in unreadable_evidence["verdict"]["summary"]
    assert unreadable_evidence["chosen"]["event_id"] == upgraded["unreadable_event_id"]
    (closest,) = [c for c in unreadable_evidence["candidates"] if c["verdict"] != "rejected"]
    assert closest["event"]["id"] == upgraded["unreadable_event_id"]
    assert "cannot be read" in closest["reasons"][0]
    upgrade = net.config.upgrade_ledger
    assert upgrade is not None
    first_upgraded = next(
        e
        for e in net.record_events(upgrade, net.latest_ledger)
        if e["contractId"] == net.token_contract_id
        and decode_scval_b64(e["topic"][0]) == "transfer"
    )
    (change,) = shape_changes["discrepancies"]
    assert change["subject"] == f"{net.token_contract_id}:transfer"
    assert change["first_ledger"] == first_upgraded["ledger"]
    assert change["expected"]["shape"]["value"] == "i128"
    assert change["found"]["shape"]["value"] == "string"
    assert change["found"]["first_event_id"] == first_upgraded["id"]
