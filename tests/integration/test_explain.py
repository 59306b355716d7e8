"""GET .../explain end to end: the real service over HTTP against the simulated network, on
SQLite and PostgreSQL, explains a matched, a mismatched and a missing record and their
discrepancies with the evidence matching used."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from stellar_reconciler.decode import decode_scval_b64
from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.store.schema import ledgers
from tests.integration.harness import settings_for, wait_for
from tests.integration.test_expectations import ADMIN, AUTH, service_with_expectations
from tests.integration.test_outcomes import exact_transfers, wait_for_async

# An address no simulated account uses: nobody ever pays it.
NOBODY = "GD7YF7WOGHCMZKSQ3TDVPXY3UT3V6SJ2QL5C4TOFQ4IHK4UJUAWSVH3C"


def parties(event: dict[str, Any]) -> tuple[str, str, int]:
    """Sender, recipient and amount of a token transfer as the network recorded it."""
    sender, recipient = (decode_scval_b64(t) for t in event["topic"][1:3])
    # i128 values decode as decimal text.
    amount = int(str(decode_scval_b64(event["value"])))
    assert isinstance(sender, str) and isinstance(recipient, str)
    return sender, recipient, amount


def lone_pairs(net: SimNetwork) -> list[dict[str, Any]]:
    """Transfers whose sender and recipient pair pays only once in the network's history, so
    a record naming that pair has exactly one candidate with the right parties; inside the
    history, so their ledgers have stored neighbours on both sides."""
    transfers = exact_transfers(net)
    pairs = Counter(parties(e)[:2] for e in transfers)
    inside = range(net.first_ledger + 1, net.latest_ledger)
    return [e for e in transfers if pairs[parties(e)[:2]] == 1 and e["ledger"] in inside]


def record(net: SimNetwork, external_id: str, event: dict[str, Any], **fields: Any) -> dict:
    sender, recipient, amount = parties(event)
    return {
        "external_id": external_id,
        "contract_id": net.token_contract_id,
        "event_name": "transfer",
        "from": sender,
        "to": recipient,
        "amount": str(amount),
        "deadline_ledger": net.latest_ledger,
        **fields,
    }


async def explain(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await http.get(url)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_explanations_give_the_evidence_of_each_verdict(database_url: str) -> None:
    """A matched record (external id with slashes) names its event as taken, the ledger's
    stored hash, a hash chain that holds and re-verification covering it; a mismatch takes
    its event with the amount difference given (-1000); a missing record rejects every
    candidate naming the recipient; their discrepancies explain through the record; an
    unknown record or discrepancy is a 404 that says where to look; the explain path changes
    nothing (PATCH there is a 405, not a deadline change of a record "short/explain")."""
    net = SimNetwork(
        SimNetConfig(seed=31, first_ledger=1000, prebuilt_ledgers=60, events_per_ledger=20)
    )
    paid, short = lone_pairs(net)[:2]
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN, verify_every_ledgers=10)
        async with (
            service_with_expectations(settings) as (service, base, _),
            httpx.AsyncClient(timeout=10) as http,
        ):
            await wait_for(
                lambda: service.status.last_processed_ledger == net.latest_ledger, 30, "catch-up"
            )
            amount = parties(short)[2]
            records = [
                record(net, "invoice/2026/paid", paid),
                record(net, "short", short, amount=str(amount + 1000)),
                record(net, "missing", paid, to=NOBODY),
            ]
            posted = await http.post(f"{base}/api/expectations", json=records, headers=AUTH)
            assert posted.status_code == 201, posted.text
            matched = await wait_for_async(
                lambda: _covered(http, f"{base}/api/expectations/invoice/2026/paid/explain")
            )
            mismatch = await explain(http, f"{base}/api/expectations/short/explain")
            missing = await explain(http, f"{base}/api/expectations/missing/explain")
            found = (await http.get(f"{base}/api/discrepancies?limit=100")).json()
            by_kind = {d["kind"]: d for d in found["discrepancies"]}
            of_mismatch = await explain(
                http, f"{base}/api/discrepancies/{by_kind['amount_mismatch']['id']}/explain"
            )
            of_missing = await explain(
                http, f"{base}/api/discrepancies/{by_kind['missing_expected']['id']}/explain"
            )
            unknown = await http.get(f"{base}/api/expectations/no/such/record/explain")
            no_discrepancy = await http.get(f"{base}/api/discrepancies/999999/explain")
            plain = await http.get(f"{base}/api/expectations/invoice/2026/paid")
            patched = await http.patch(
                f"{base}/api/expectations/short/explain",
                json={"deadline_ledgers": 5},
                headers=AUTH,
            )
            with service.store.engine.connect() as conn:
                stored_hash = conn.execute(
                    ledgers.select().where(ledgers.c.sequence == paid["ledger"])
                ).one()
    assert plain.status_code == 200 and plain.json()["status"] == "matched"
    assert (patched.status_code, patched.headers["allow"]) == (405, "GET")

    assert matched["verdict"]["status"] == "matched"
    assert matched["verdict"]["summary"].startswith(f"matched event {paid['id']}")
    taken = matched["candidates"][0]
    assert (taken["verdict"], taken["event"]["id"], taken["differences"]) == (
        "taken",
        paid["id"],
        [],
    )
    assert matched["candidates_by_verdict"]["taken"] == 1
    assert all(c["differences"] or c["claimed_by"] for c in matched["candidates"][1:])
    chosen = matched["chosen"]["ledger"]
    assert chosen["sequence"] == paid["ledger"] and chosen["hash"] == stored_hash.hash
    assert chosen["chain"] == {"holds": True, "previous_links": True, "next_links": True}
    assert chosen["re_verification"]["covers_ledger"] is True
    assert chosen["re_verification"]["verified_by"] is not None

    assert mismatch["verdict"]["status"] == "amount_mismatch"
    (short_taken,) = [c for c in mismatch["candidates"] if c["verdict"] == "taken"]
    assert short_taken["event"]["id"] == short["id"]
    (difference,) = short_taken["differences"]
    assert (difference["field"], difference["by"]) == ("amount", "-1000")
    assert mismatch["expectation"]["difference"] == "-1000"
    assert "outside the tolerance of 0" in difference["reason"]

    assert missing["verdict"]["status"] == "missing_expected" and missing["chosen"] is None
    assert missing["candidates_considered"] > 0
    for candidate in missing["candidates"]:
        assert candidate["verdict"] == "rejected"
        assert any(d.get("label") == "recipient" for d in candidate["differences"])
    assert missing["window"]["by"] == "contract_and_event_name"

    assert of_mismatch["discrepancy"]["subject"] == "short"
    assert of_mismatch["expectation"]["verdict"] == mismatch["verdict"]
    assert of_missing["expectation"]["expectation"]["external_id"] == "missing"

    assert unknown.status_code == 404
    assert "no/such/record" in unknown.json()["error"]
    assert no_discrepancy.status_code == 404
    assert "/api/discrepancies" in no_discrepancy.json()["error"]


async def _covered(http: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
    """The explanation once re-verification has passed its chosen ledger."""
    body = await explain(http, url)
    chosen = body["chosen"]
    return body if chosen and chosen["ledger"]["re_verification"]["covers_ledger"] else None


async def test_an_unexpected_event_explains_which_records_it_is_not(database_url: str) -> None:
    """With the token contract watched for unexpected events, an unclaimed transfer's
    discrepancy explains as the event, unclaimed, beside the waiting record of the same
    contract and name with the fields that differ, and its ledger with a chain that holds."""
    net = SimNetwork(
        SimNetConfig(seed=37, first_ledger=1000, prebuilt_ledgers=40, events_per_ledger=10)
    )
    paid, *others = lone_pairs(net)
    # Another sender and another recipient, so both differ.
    sender, recipient, _ = parties(paid)
    other = next(e for e in others if parties(e)[0] != sender and parties(e)[1] != recipient)
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN)
        async with (
            service_with_expectations(settings, (net.token_contract_id,)) as (service, base, _),
            httpx.AsyncClient(timeout=10) as http,
        ):
            await wait_for(
                lambda: service.status.last_processed_ledger == net.latest_ledger, 30, "catch-up"
            )
            posted = await http.post(
                f"{base}/api/expectations",
                json=record(net, "paid", paid, deadline_ledger=net.latest_ledger + 100),
                headers=AUTH,
            )
            assert posted.status_code == 201 and posted.json()["status"] == "matched"
            listed = await http.get(f"{base}/api/discrepancies?kind=unexpected&limit=1000")
            (found,) = [d for d in listed.json()["discrepancies"] if d["subject"] == other["id"]]
            shown = await explain(http, f"{base}/api/discrepancies/{found['id']}/explain")
    unexpected = shown["unexpected_event"]
    assert unexpected["event"]["id"] == other["id"] and unexpected["claimed_by"] is None
    (considered,) = unexpected["records_considered"]
    assert considered["external_id"] == "paid" and considered["event_id"] == paid["id"]
    fields = {d["field"] for d in considered["differences"]}
    assert {"topics.1", "topics.2"} <= fields
    (ledger,) = shown["ledgers"]
    assert ledger["sequence"] == other["ledger"] and ledger["chain"]["holds"] is True
