"""Shape changes end to end: the real service follows a simulated network whose token contract
is upgraded at a ledger, on SQLite and PostgreSQL, through real HTTP."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx

from stellar_reconciler.decode import decode_scval_b64
from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from tests.integration.harness import running_service, settings_for, wait_for
from tests.integration.test_expectations import ADMIN, AUTH
from tests.integration.test_outcomes import exact_transfers

UPGRADE_LEDGER = 1040
CONFIG = SimNetConfig(
    seed=23,
    first_ledger=1000,
    prebuilt_ledgers=30,
    events_per_ledger=20,
    upgrade_ledger=UPGRADE_LEDGER,
    upgrade_shape="string",
)
TOPICS = ["symbol", "address", "address", "string"]


def record(net: SimNetwork, external_id: str, transfer: dict[str, Any], amount: str) -> Any:
    return {
        "external_id": external_id,
        "contract_id": net.token_contract_id,
        "event_name": "transfer",
        "tx_hash": transfer["txHash"],
        "amount": amount,
        "deadline_ledger": UPGRADE_LEDGER + 12,
    }


async def checkpoint(http: httpx.AsyncClient, base: str) -> int:
    health = (await http.get(f"{base}/health")).json()
    return int(health["last_processed_ledger"] or 0)


async def shape_changes(http: httpx.AsyncClient, base: str) -> list[dict[str, Any]]:
    body = (await http.get(f"{base}/api/discrepancies?kind=shape_changed&limit=100")).json()
    found: list[dict[str, Any]] = body["discrepancies"]
    return found


async def test_an_upgrade_opens_shape_changed_once_and_unreadable_amounts_say_why(
    database_url: str,
) -> None:
    """Transfers become decimal strings from ledger 1040: exactly one shape_changed (i128 to
    string, first ledger = the first upgraded transfer), still one after a restart, more
    ledgers and a rescan across the upgrade; the record paid before the upgrade matches, the
    one paid after it settles amount_unreadable naming the type found."""
    net = SimNetwork(CONFIG)
    # Same seed, same events: the ledgers the network has not closed yet, seen in advance.
    ahead = SimNetwork(replace(CONFIG, prebuilt_ledgers=70))
    before = exact_transfers(ahead, 1030)
    paid = next(e for e in before if e["ledger"] < UPGRADE_LEDGER)
    late = next(e for e in before if UPGRADE_LEDGER + 2 <= e["ledger"] <= UPGRADE_LEDGER + 8)
    upgraded = [
        e
        for e in ahead.record_events(UPGRADE_LEDGER, ahead.latest_ledger)
        if e["contractId"] == ahead.token_contract_id
        and decode_scval_b64(e["topic"][0]) == "transfer"
    ]
    first_upgraded = upgraded[0]
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN, verify_every_ledgers=0)
        async with (
            running_service(settings) as (service, base),
            httpx.AsyncClient(timeout=10) as http,
        ):
            await wait_for(lambda: service.store.checkpoint().ledger == 1029, what="catch-up")
            records = [
                record(net, "paid", paid, str(decode_scval_b64(paid["value"]))),
                record(net, "late", late, "1000"),
            ]
            posted = await http.post(f"{base}/api/expectations", json=records, headers=AUTH)
            assert posted.status_code == 201, posted.text
            net.close_ledgers(30)
            await wait_for(lambda: service.store.checkpoint().ledger == 1059, what="ledger 1059")
            changes = await shape_changes(http, base)
            settled = {
                name: (await http.get(f"{base}/api/expectations/{name}")).json()
                for name in ("paid", "late")
            }
            job = (
                await http.post(
                    f"{base}/api/rescans",
                    json={"from_ledger": 1035, "to_ledger": 1045},
                    headers=AUTH,
                )
            ).json()

            def rescanned() -> bool:
                current = service.controls.job(job["id"])
                return current is not None and current.state in ("done", "failed")

            await wait_for(rescanned, what="the rescan")
            assert service.controls.job(job["id"]).state == "done"  # type: ignore[union-attr]
            after_rescan = await shape_changes(http, base)
        net.close_ledgers(5)
        async with (
            running_service(settings) as (service, base),
            httpx.AsyncClient(timeout=10) as http,
        ):
            await wait_for(lambda: service.store.checkpoint().ledger == 1064, what="ledger 1064")
            after_restart = await shape_changes(http, base)
            unreadable = (
                await http.get(f"{base}/api/discrepancies?kind=amount_unreadable")
            ).json()["discrepancies"]
            summary = (await http.get(f"{base}/api/reconciliation")).json()
    [change] = changes
    assert change["subject"] == f"{net.token_contract_id}:transfer"
    assert change["first_ledger"] == first_upgraded["ledger"]
    assert change["expected"]["shape"] == {"topics": TOPICS, "value": "i128"}
    assert change["found"]["shape"] == {"topics": TOPICS, "value": "string"}
    assert change["found"]["first_event_id"] == first_upgraded["id"]
    assert [d["id"] for d in after_rescan] == [change["id"]]
    assert [d["id"] for d in after_restart] == [change["id"]]
    assert settled["paid"]["status"] == "matched"
    assert settled["late"]["status"] == "amount_unreadable"
    assert settled["late"]["unreadable_event_id"] == late["id"]
    shown = decode_scval_b64(late["value"])
    assert settled["late"]["unreadable_reason"] == (
        f"the value is a string ({shown!r}), not a whole number in the token's smallest unit"
    )
    [finding] = unreadable
    assert finding["subject"] == "late"
    assert summary["expectations"]["amount_unreadable"] == 1
    assert summary["expectations"]["missing_expected"] == 0
