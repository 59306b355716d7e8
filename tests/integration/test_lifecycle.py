"""The record lifecycle through real HTTP against the running service and the simulated
network, on SQLite and PostgreSQL: cancel, deadline changes and dry runs, with their errors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from stellar_reconciler.decode import decode_scval_b64
from stellar_reconciler.service import Service
from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from tests.integration.harness import settings_for, wait_for
from tests.integration.test_expectations import ADMIN, AUTH, service_with_expectations, tx_of
from tests.integration.test_outcomes import exact_transfer, exact_transfers, wait_for_async

CONFIG = {"seed": 31, "first_ledger": 1000, "events_per_ledger": 20}


@contextlib.asynccontextmanager
async def running(
    database_url: str, net: SimNetwork
) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    """The service caught up with `net`, and an HTTP client for it."""
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN)
        async with (
            service_with_expectations(settings) as (service, base, _),
            httpx.AsyncClient(base_url=base, timeout=10) as http,
        ):
            await caught_up(service, net)
            yield service, http


async def caught_up(service: Service, net: SimNetwork) -> None:
    await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger, 30, "tip")


def payment(event: dict[str, Any], external_id: str, **fields: Any) -> dict[str, Any]:
    """A record pinned to `event`'s transaction with its exact amount."""
    return {
        "external_id": external_id,
        "contract_id": event["contractId"],
        "event_name": "transfer",
        "tx_hash": event["txHash"],
        "amount": str(decode_scval_b64(event["value"])),
        "deadline_ledger": event["ledger"] + 500,
        **fields,
    }


def nothing(external_id: str, net: SimNetwork, **fields: Any) -> dict[str, Any]:
    """A record no event of the network fits."""
    return {
        "external_id": external_id,
        "contract_id": net.token_contract_id,
        "event_name": "never_emitted",
        "deadline_ledger": net.latest_ledger + 500,
        **fields,
    }


async def audit_actions(http: httpx.AsyncClient) -> list[tuple[str, str]]:
    entries = (await http.get("/api/audit")).json()["entries"]
    return [(e["action"], e["target"]) for e in entries]


async def test_a_cancelled_record_stays_audited_and_never_claims_its_event(
    database_url: str,
) -> None:
    """DELETE keeps the record as cancelled with who and when, in the audit log once; the
    event it would have won goes to the next record that fits; 401, 404 and 409 otherwise."""
    net = SimNetwork(SimNetConfig(**CONFIG, prebuilt_ledgers=20))
    # The network is deterministic: a twin with more ledgers shows the events to come.
    future = SimNetwork(SimNetConfig(**CONFIG, prebuilt_ledgers=30))
    coming = exact_transfer(future, first=net.latest_ledger + 1)
    async with running(database_url, net) as (service, http):
        # Equal records: "a-..." would win the event (external id breaks the tie).
        twins = [payment(coming, "a-cancelled"), payment(coming, "b-kept")]
        assert (await http.post("/api/expectations", json=twins, headers=AUTH)).status_code == 201
        assert (await http.delete("/api/expectations/a-cancelled")).status_code == 401
        cancelled = await http.delete("/api/expectations/a-cancelled", headers=AUTH)
        again = await http.delete("/api/expectations/a-cancelled", headers=AUTH)
        assert cancelled.status_code == again.status_code == 200, cancelled.text
        record = cancelled.json()
        assert (record["status"], record["cancelled_by"]) == ("cancelled", "admin")
        assert record["cancelled_at"] and again.json() == record
        net.close_ledgers(10)
        await caught_up(service, net)
        kept = (await http.get("/api/expectations/b-kept")).json()
        gone = (await http.get("/api/expectations/a-cancelled")).json()
        assert kept["status"] == "matched" and kept["event_id"] == coming["id"]
        assert gone["status"] == "cancelled" and gone["event_id"] is None
        assert (await audit_actions(http)).count(("expectations.cancel", "a-cancelled")) == 1
        unknown = await http.delete("/api/expectations/nope", headers=AUTH)
        settled = await http.delete("/api/expectations/b-kept", headers=AUTH)
        assert unknown.status_code == 404 and "nope" in unknown.json()["error"]
        assert settled.status_code == 409 and "is matched" in settled.json()["error"]
        repost = await http.post("/api/expectations", json=twins[0], headers=AUTH)
        assert repost.status_code == 200 and repost.json()["status"] == "cancelled"
        summary = (await http.get("/api/reconciliation")).json()
        assert summary["expectations"]["cancelled"] == 1 and summary["match_rate"] == 1.0


async def test_deadline_changes_take_effect_and_bad_ones_are_refused(database_url: str) -> None:
    """PATCH moves a pending record's deadline (absolute or relative, audited): a shortened
    one expires at the new deadline, an extended one keeps waiting. A past deadline or a bad
    body is 422, an unknown id 404, a settled or cancelled record 409."""
    net = SimNetwork(SimNetConfig(**CONFIG, prebuilt_ledgers=20))
    async with running(database_url, net) as (service, http):
        tip = net.latest_ledger
        records = [
            nothing("shorten", net),
            nothing("extend", net, deadline_ledger=tip + 2),
            nothing("cancel-me", net),
            payment(exact_transfer(net), "paid"),
        ]
        assert (await http.post("/api/expectations", json=records, headers=AUTH)).status_code == 201
        await http.delete("/api/expectations/cancel-me", headers=AUTH)
        short = await http.patch(
            "/api/expectations/shorten", json={"deadline_ledger": tip + 1}, headers=AUTH
        )
        long = await http.patch(
            "/api/expectations/extend", json={"deadline_ledgers": 1000}, headers=AUTH
        )
        assert short.status_code == long.status_code == 200, short.text
        assert short.json()["deadline_ledger"] == tip + 1
        assert (long.json()["deadline_ledger"], long.json()["deadline_ledgers"]) == (
            tip + 1000,
            1000,
        )
        net.close_ledgers(3)
        await caught_up(service, net)
        assert (await http.get("/api/expectations/shorten")).json()["status"] == "missing_expected"
        assert (await http.get("/api/expectations/extend")).json()["status"] == "pending"
        (entry, *_) = (await http.get("/api/audit")).json()["entries"]
        assert (entry["action"], entry["target"]) == ("expectations.deadline", "extend")
        assert entry["detail"]["from"]["deadline_ledger"] == tip + 2
        assert entry["detail"]["to"] == {"deadline_ledger": tip + 1000, "deadline_ledgers": 1000}
        refusals = {
            "past": await http.patch(
                "/api/expectations/extend", json={"deadline_ledger": tip}, headers=AUTH
            ),
            "empty": await http.patch("/api/expectations/extend", json={}, headers=AUTH),
            "both": await http.patch(
                "/api/expectations/extend",
                json={"deadline_ledger": tip + 9, "deadline_ledgers": 9},
                headers=AUTH,
            ),
            "extra": await http.patch(
                "/api/expectations/extend", json={"deadline": 9}, headers=AUTH
            ),
            "text": await http.patch(
                "/api/expectations/extend", json={"deadline_ledger": "soon"}, headers=AUTH
            ),
            "unknown": await http.patch(
                "/api/expectations/nope", json={"deadline_ledgers": 5}, headers=AUTH
            ),
            "settled": await http.patch(
                "/api/expectations/paid", json={"deadline_ledgers": 5}, headers=AUTH
            ),
            "cancelled": await http.patch(
                "/api/expectations/cancel-me", json={"deadline_ledgers": 5}, headers=AUTH
            ),
            "no token": await http.patch("/api/expectations/extend", json={"deadline_ledgers": 5}),
        }
    codes = {name: answer.status_code for name, answer in refusals.items()}
    assert codes == {
        "past": 422,
        "empty": 422,
        "both": 422,
        "extra": 422,
        "text": 422,
        "unknown": 404,
        "settled": 409,
        "cancelled": 409,
        "no token": 401,
    }
    assert "not after ledger" in refusals["past"].json()["error"]
    assert "exactly one of" in refusals["empty"].json()["error"]
    assert "is matched" in refusals["settled"].json()["error"]


async def test_a_dry_run_answers_what_each_record_would_match_and_stores_nothing(
    database_url: str,
) -> None:
    """dry_run=true gives each record's status and event or closest candidate as a post
    would, stores no record, discrepancy or audit entry, answers 409 and 422 as a post does,
    and a real post afterwards ends exactly as the dry run said."""
    net = SimNetwork(SimNetConfig(**CONFIG, prebuilt_ledgers=20))
    event, waiting, due = exact_transfers(net)[:3]

    def less(e: dict[str, Any]) -> str:
        return str(int(decode_scval_b64(e["value"])) - 7)

    async with running(database_url, net) as (_, http):
        stored = nothing("stored", net)
        assert (await http.post("/api/expectations", json=stored, headers=AUTH)).status_code == 201
        before = (await http.get("/api/reconciliation")).json()
        trial = [
            payment(event, "exact"),
            payment(waiting, "short-wait", amount=less(waiting)),
            payment(due, "short-due", amount=less(due), deadline_ledger=due["ledger"]),
            nothing("never", net, tx_hash=tx_of("never"), deadline_ledger=net.latest_ledger),
            stored,
        ]
        dry = await http.post("/api/expectations?dry_run=true", json=trial, headers=AUTH)
        one = await http.post("/api/expectations?dry_run=true", json=trial[0], headers=AUTH)
        conflict = await http.post(
            "/api/expectations?dry_run=true",
            json=[nothing("stored", net, deadline_ledger=net.latest_ledger + 9)],
            headers=AUTH,
        )
        bad = await http.post(
            "/api/expectations?dry_run=true", json=[{"external_id": "x"}], headers=AUTH
        )
        unauthorised = await http.post("/api/expectations?dry_run=true", json=trial[0])
        after = (await http.get("/api/reconciliation")).json()
        missing = [
            (await http.get(f"/api/expectations/{r['external_id']}")).status_code for r in trial
        ]
        actions = await audit_actions(http)
        real = await http.post("/api/expectations", json=trial[:4], headers=AUTH)
        await wait_for_async(
            lambda: _settled(http, "never"), 30
        )  # the pinned one asks getTransaction once posted
    assert dry.status_code == 200, dry.text
    body = dry.json()
    assert (body["dry_run"], body["created"], body["existing"]) == (True, 4, 1)
    got = {r["external_id"]: r for r in body["expectations"]}
    assert (got["exact"]["status"], got["exact"]["event_id"]) == ("matched", event["id"])
    assert got["short-wait"]["status"] == "pending"
    assert got["short-wait"]["candidate_event_id"] == waiting["id"]
    assert got["short-wait"]["difference"] == "7"
    assert (got["short-due"]["status"], got["short-due"]["event_id"]) == (
        "amount_mismatch",
        due["id"],
    )
    assert got["never"]["status"] == "pending" and got["never"]["outcome_due"] is True
    assert got["stored"]["status"] == "pending"
    assert one.status_code == 200 and one.json()["event_id"] == event["id"]
    assert one.json()["candidate_event_id"] is None
    assert conflict.status_code == 409 and conflict.json()["detail"][0]["external_id"] == "stored"
    assert bad.status_code == 422 and unauthorised.status_code == 401
    assert after == before and missing == [404, 404, 404, 404, 200]
    assert not any(action == "expectations.create" and t != "stored" for action, t in actions)
    assert real.status_code == 201
    posted = {r["external_id"]: r for r in real.json()["expectations"]}
    for name in ("exact", "short-due"):
        assert (posted[name]["status"], posted[name]["event_id"]) == (
            got[name]["status"],
            got[name]["event_id"],
        )


async def _settled(http: httpx.AsyncClient, external_id: str) -> bool:
    record = (await http.get(f"/api/expectations/{external_id}")).json()
    return bool(record["status"] != "pending")
