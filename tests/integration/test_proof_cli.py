"""Proof bundles end to end on SQLite and PostgreSQL: `reconciler proof export`, `verify` (offline
and against the RPC), GET /api/proofs, and a repair inside a closed period."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from stellar_reconciler import proof
from stellar_reconciler.decode import decode_scval_b64
from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from tests.integration.harness import running_service, settings_for, wait_for
from tests.integration.test_cli import reconciler
from tests.unit.test_proof import flip

ADMIN = "admin-token-for-proofs-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
FIRST, LAST = 110, 140


def network(seed: int = 61) -> SimNetwork:
    return SimNetwork(
        SimNetConfig(seed=seed, first_ledger=100, prebuilt_ledgers=60, events_per_ledger=4)
    )


def records_for(net: SimNetwork) -> list[dict[str, Any]]:
    """Two records that match transfers of FIRST..LAST exactly, and one that never will."""
    found = [
        {
            "tx": e["txHash"],
            "ledger": e["ledger"],
            "topics": [decode_scval_b64(t) for t in e["topic"]],
            "value": decode_scval_b64(e["value"]),
        }
        for e in net.record_events(FIRST, LAST)
        if e["contractId"] == net.token_contract_id and e["inSuccessfulContractCall"]
    ]
    fits = Counter((e["tx"], *e["topics"][1:3]) for e in found)
    transfers = [
        e for e in found if e["topics"][0] == "transfer" and fits[(e["tx"], *e["topics"][1:3])] == 1
    ]
    records = [
        {
            "external_id": f"paid-{n}",
            "contract_id": net.token_contract_id,
            "event_name": "transfer",
            "tx_hash": e["tx"],
            "from": e["topics"][1],
            "to": e["topics"][2],
            "amount": str(e["value"]),
            "deadline_ledger": e["ledger"] + 5,
        }
        for n, e in enumerate(transfers[:2])
    ]
    records.append(
        {
            "external_id": "never-paid",
            "contract_id": net.token_contract_id,
            "event_name": "transfer",
            "tx_hash": "ab" * 32,
            "amount": "5",
            "deadline_ledger": LAST - 3,
        }
    )
    return records


def verify(path: Path, *extra: str) -> tuple[int, str]:
    result = reconciler("proof", "verify", str(path), *extra)
    return result.returncode, result.stdout + result.stderr


async def test_export_verify_and_every_changed_part_fails(
    database_url: str, tmp_path: Path
) -> None:
    """An exported bundle of a range with settled records verifies offline and against the
    RPC; one byte changed in the header chain, an event, the root, a verdict or the settings
    fails with a message naming that part (and its ledger, event or record)."""
    net = network()
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN)
        async with running_service(settings) as (service, base):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            async with httpx.AsyncClient(base_url=base) as http:
                posted = await http.post("/api/expectations", json=records_for(net), headers=AUTH)
                assert posted.status_code == 201, posted.text
                await wait_for(
                    lambda: service.store.expectations.counts().get("pending", 0) == 0,
                    what="every record settled",
                )
                served = await http.get(f"/api/proofs?from_ledger={FIRST}&to_ledger={LAST}")
            bundle = tmp_path / "proof.json"
            env = {"DATABASE_URL": database_url}
            args = ["proof", "export", "--from", str(FIRST), "--to", str(LAST)]
            exported = await asyncio.to_thread(reconciler, *args, "--output", str(bundle), env=env)
            assert exported.returncode == 0, exported.stderr
            assert f"ledgers {FIRST}-{LAST}" in exported.stdout
            code, said = await asyncio.to_thread(verify, bundle, "--rpc", url)
            assert code == 0 and "verifies" in said and "match the network" in said, said
        other = tmp_path / "other-network.json"
        with serve_in_thread(network(seed=62)) as other_url:
            code, said = await asyncio.to_thread(verify, bundle, "--rpc", other_url)
        assert code == 1 and f"network: ledger {FIRST}'s hash is" in said, said

    data = bundle.read_bytes()
    content = json.loads(data)
    assert served.status_code == 200 and proof.check(served.content) == []
    # The same bundle but for when it was made (and so its service digest and seal).
    unstamped = {"service", "digests", "seal"}
    assert {k: v for k, v in json.loads(served.content).items() if k not in unstamped} == {
        k: v for k, v in content.items() if k not in unstamped
    }
    verdicts = {r["external_id"]: r["status"] for r in content["records"]}
    assert verdicts == {"paid-0": "matched", "paid-1": "matched", "never-paid": "not_found"}
    assert content["settings"]["network_passphrase"] == net.passphrase
    middle = content["headers"][5]
    event = content["events"][3]
    cases = [
        (
            f'"hash":"{middle["hash"]}',
            12,
            f"header chain: ledger {middle['sequence']}'s header was changed",
        ),
        (
            event["value_xdr"],
            6,
            f"event: event {event['id']} (ledger {event['ledger']}) was changed",
        ),
        (
            f'"events_root":"{content["merkle"]["events_root"]}',
            20,
            f"merkle root: the events recompute to {content['merkle']['events_root']}",
        ),
        ('"status":"not_found"', 12, "verdict: record 'never-paid'"),
        (net.passphrase[:12], 3, "settings: changed after export"),
    ]
    for needle, offset, message in cases:
        other.write_bytes(flip(data, needle, offset))
        code, said = await asyncio.to_thread(verify, other)
        assert code == 1 and said.startswith(message), (needle, said)
        assert "does not verify" in said


async def test_unindexed_or_bad_ranges_are_refused_clearly(
    database_url: str, tmp_path: Path
) -> None:
    """Reversed, unindexed or too long ranges: 422 over HTTP and exit 2 from the command line,
    each saying what is wrong."""
    net = network()
    with serve_in_thread(net) as url:
        async with running_service(settings_for(database_url, url)) as (service, base):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            async with httpx.AsyncClient(base_url=base) as http:
                reversed_ = await http.get("/api/proofs?from_ledger=120&to_ledger=110")
                beyond = await http.get("/api/proofs?from_ledger=150&to_ledger=900")
                early = await http.get("/api/proofs?from_ledger=50&to_ledger=120")
                long = await http.get("/api/proofs?from_ledger=100&to_ledger=20000")
                missing = await http.get("/api/proofs?from_ledger=100")
    assert reversed_.status_code == 422 and "at least from_ledger" in reversed_.json()["error"]
    assert beyond.status_code == 422
    assert "ledger 900 is not indexed yet (indexed through 159)" in beyond.json()["error"]
    assert early.status_code == 422 and "ledger 50 is not stored" in early.json()["error"]
    assert long.status_code == 422 and "reconciler proof export" in long.json()["error"]
    assert missing.status_code == 422
    result = await asyncio.to_thread(
        reconciler,
        *("proof", "export", "--from", "150", "--to", "900", "--output", str(tmp_path / "x")),
        env={"DATABASE_URL": database_url},
    )
    assert result.returncode == 2 and "ledger 900 is not indexed yet" in result.stderr
    assert not (tmp_path / "x").exists()
    nowhere = tmp_path / "no" / "such" / "folder.json"
    result = await asyncio.to_thread(
        reconciler,
        *("proof", "export", "--from", "110", "--to", "120", "--output", str(nowhere)),
        env={"DATABASE_URL": database_url},
    )
    assert result.returncode == 2 and "does not exist" in result.stderr


async def test_a_repair_inside_a_closed_period_opens_a_discrepancy(
    database_url: str, tmp_path: Path
) -> None:
    """A period closed by `proof export --close`, then an event the network serves changed
    on re-verification: the repair opens closed_period_changed naming the period and both
    roots, and a new bundle of the period no longer verifies against its recorded root."""
    net = network()
    altered = net.alter_event(net.event_id_at(125, 1))
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, verify_every_ledgers=0)
        async with running_service(settings) as (service, base):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            env = {"DATABASE_URL": database_url}
            before = tmp_path / "before.json"
            args = ["proof", "export", "--from", str(FIRST), "--to", str(LAST), "--close"]
            closed = await asyncio.to_thread(reconciler, *args, "--output", str(before), env=env)
            assert closed.returncode == 0 and "closed" in closed.stdout, closed.stderr
            [period] = service.store.periods.listing()
            args = ["proof", "close", "--from", str(FIRST), "--to", str(LAST)]
            again = await asyncio.to_thread(reconciler, *args, env=env)
            assert again.returncode == 0 and "was already closed" in again.stdout, again.stderr
            assert period["events_root"] in again.stdout
            report = await service.maintenance.verify(120, 130)
            assert [a <= 125 <= b for a, b in report.repaired] == [True], report.as_json()
            [record] = service.store.discrepancies.listing(kind="closed_period_changed")
            async with httpx.AsyncClient(base_url=base) as http:
                served = await http.get(f"/api/proofs?from_ledger={FIRST}&to_ledger={LAST}")
    assert record["open"] and (record["first_ledger"], record["last_ledger"]) == (FIRST, LAST)
    assert record["expected"]["events_root"] == period["events_root"]
    assert record["found"]["events_root"] != period["events_root"]
    assert period["events_root"] in record["message"]
    assert record["found"]["events_root"] in record["message"]
    assert altered in {e["id"] for e in json.loads(before.read_bytes())["events"]}
    assert (await asyncio.to_thread(verify, before))[0] == 0
    problems = proof.check(served.content)
    assert problems == [
        (
            "period",
            f"closed with events_root {period['events_root']}; the bundle's is "
            f"{record['found']['events_root']}",
        )
    ]
