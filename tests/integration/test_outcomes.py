"""Transaction outcomes end to end: the real service asks the simulated network's getTransaction
about pinned records that got no event, on SQLite and PostgreSQL, through real HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from stellar_reconciler.decode import decode_scval_b64
from stellar_reconciler.simnet import FaultKind, SimNetConfig, SimNetwork, serve_in_thread
from tests.integration.harness import settings_for, wait_for
from tests.integration.test_expectations import ADMIN, AUTH, service_with_expectations, tx_of


def small_network() -> SimNetwork:
    return SimNetwork(
        SimNetConfig(seed=23, first_ledger=1000, prebuilt_ledgers=60, events_per_ledger=20)
    )


def naturally_failed_tx(net: SimNetwork) -> str:
    """A transaction of the network that failed: its fee event is of a failed call."""
    recorded = net.record_events(net.first_ledger, net.latest_ledger)
    return next(e["txHash"] for e in recorded if not e["inSuccessfulContractCall"])


def exact_transfer(net: SimNetwork, first: int = 0) -> dict[str, Any]:
    """A successful token transfer (from ledger `first` on) alone in its transaction."""
    return exact_transfers(net, first)[0]


def exact_transfers(net: SimNetwork, first: int = 0) -> list[dict[str, Any]]:
    """Successful token transfers (from ledger `first` on), each alone in its transaction."""
    recorded = net.record_events(max(first, net.first_ledger), net.latest_ledger)
    transfers = [
        e
        for e in recorded
        if e["contractId"] == net.token_contract_id
        and e["inSuccessfulContractCall"]
        and decode_scval_b64(e["topic"][0]) == "transfer"
    ]
    per_tx: dict[str, int] = {}
    for e in transfers:
        per_tx[e["txHash"]] = per_tx.get(e["txHash"], 0) + 1
    return [e for e in transfers if per_tx[e["txHash"]] == 1]


def pinned(net: SimNetwork, external_id: str, tx_hash: str, deadline: int) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "contract_id": net.token_contract_id,
        "event_name": "transfer",
        "tx_hash": tx_hash,
        "amount": "1000",
        "deadline_ledger": deadline,
    }


async def settled(http: httpx.AsyncClient, base: str, external_id: str) -> dict[str, Any] | None:
    record: dict[str, Any] = (await http.get(f"{base}/api/expectations/{external_id}")).json()
    return record if record["status"] != "pending" else None


async def test_pinned_records_learn_what_became_of_their_transaction(database_url: str) -> None:
    """A record whose transaction failed on chain ends failed_on_chain with the result code
    (a failure declared by the test and one the network produced); one whose transaction never
    appears ends not_found at its deadline; a matched pinned record and one still before its
    deadline are untouched, and getTransaction is asked only about the three unmatched."""
    net = small_network()
    declared = tx_of("declared-failed")
    net.transactions.fail(declared)
    natural = naturally_failed_tx(net)
    transfer = exact_transfer(net)
    deadline = net.latest_ledger - 5
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN)
        async with (
            service_with_expectations(settings) as (service, base, _),
            httpx.AsyncClient(timeout=10) as http,
        ):
            records = [
                pinned(net, "declared", declared, deadline),
                pinned(net, "natural", natural, deadline),
                pinned(net, "never", tx_of("never-submitted"), deadline),
                {
                    **pinned(net, "paid", transfer["txHash"], deadline),
                    "amount": str(decode_scval_b64(transfer["value"])),
                },
                pinned(net, "later", tx_of("not-yet"), net.latest_ledger + 1000),
            ]
            posted = await http.post(f"{base}/api/expectations", json=records, headers=AUTH)
            assert posted.status_code == 201, posted.text
            outcomes = {}
            for name in ("declared", "natural", "never", "paid"):
                outcomes[name] = await wait_for_async(lambda n=name: settled(http, base, n))
            later = (await http.get(f"{base}/api/expectations/later")).json()
            discrepancies = (await http.get(f"{base}/api/discrepancies?limit=100")).json()
            # The gauges are refreshed from the database every few seconds; now, for the test.
            assert await asyncio.to_thread(service.telemetry.refresh_from_store)
            metrics = (await http.get(f"{base}/metrics")).text
    assert outcomes["declared"]["status"] == "failed_on_chain"
    assert outcomes["declared"]["result_code"] == "txFAILED: op 0 INVOKE_HOST_FUNCTION_TRAPPED"
    assert outcomes["declared"]["tx_status"] == "FAILED"
    assert outcomes["natural"]["status"] == "failed_on_chain"
    assert outcomes["natural"]["tx_ledger"] is not None
    assert outcomes["never"]["status"] == "not_found"
    assert outcomes["never"]["tx_status"] == "NOT_FOUND"
    assert outcomes["paid"]["status"] == "matched"
    assert outcomes["paid"]["event_id"] == transfer["id"]
    assert outcomes["paid"]["tx_status"] is None
    assert later["status"] == "pending" and later["tx_status"] is None
    assert net.requests_served.get("getTransaction") == 3
    kinds = {(d["kind"], d["subject"]): d for d in discrepancies["discrepancies"]}
    assert "INVOKE_HOST_FUNCTION_TRAPPED" in kinds[("failed_on_chain", "declared")]["message"]
    assert ("not_found", "never") in kinds
    assert not any(kind == "missing_expected" for kind, _ in kinds)
    assert 'reconciler_expectations{status="failed_on_chain"} 2.0' in metrics
    assert 'reconciler_expectations{status="not_found"} 1.0' in metrics


async def test_a_node_that_forgot_the_deadline_cannot_say_not_found(database_url: str) -> None:
    """When the RPC no longer holds the deadline's ledger, a transaction it does not know is
    not called not_found: the record settles missing_expected, saying why."""
    net = small_network()
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN)
        async with (
            service_with_expectations(settings) as (service, base, _),
            httpx.AsyncClient(timeout=10) as http,
        ):
            await wait_for(
                lambda: service.status.last_processed_ledger == net.latest_ledger, 30, "catch-up"
            )
            net.set_retention_window(10)
            record = pinned(net, "old", tx_of("old"), net.first_ledger + 5)
            posted = await http.post(f"{base}/api/expectations", json=record, headers=AUTH)
            assert posted.status_code == 201, posted.text
            outcome = await wait_for_async(lambda: settled(http, base, "old"))
            (found,) = (await http.get(f"{base}/api/discrepancies?kind=missing_expected")).json()[
                "discrepancies"
            ]
    assert outcome["status"] == "missing_expected" and outcome["tx_status"] == "NOT_FOUND"
    assert "cannot say whether transaction" in found["message"]


async def test_rpc_faults_defer_the_check_and_a_node_without_the_method_cannot_say(
    database_url: str,
) -> None:
    """Overload answers (503) and a garbled answer leave the records due for a later poll,
    and they then settle by the real answer; a node that does not serve getTransaction
    (-32601) settles them missing_expected, naming the reason. Indexing never stops."""
    net = small_network()
    declared = tx_of("declared")
    net.transactions.fail(declared)
    deadline = net.latest_ledger - 5
    net.faults.add(FaultKind.HTTP_503, method="getTransaction", times=6)
    net.faults.add(FaultKind.WRONG_SHAPE, method="getTransaction", times=1)
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN)
        async with (
            service_with_expectations(settings) as (service, base, _),
            httpx.AsyncClient(timeout=10) as http,
        ):
            posted = await http.post(
                f"{base}/api/expectations",
                json=[pinned(net, "declared", declared, deadline)],
                headers=AUTH,
            )
            assert posted.status_code == 201, posted.text
            failed = await wait_for_async(lambda: settled(http, base, "declared"))
            net.faults.add(
                FaultKind.RPC_ERROR,
                method="getTransaction",
                times=None,
                code=-32601,
                message="method not found",
            )
            later = pinned(net, "unanswered", tx_of("unanswered"), net.latest_ledger)
            assert (
                await http.post(f"{base}/api/expectations", json=later, headers=AUTH)
            ).is_success
            unanswered = await wait_for_async(lambda: settled(http, base, "unanswered"))
            net.close_ledgers(3)
            await wait_for(
                lambda: service.status.last_processed_ledger == net.latest_ledger, 30, "indexing"
            )
            (found,) = (await http.get(f"{base}/api/discrepancies?kind=missing_expected")).json()[
                "discrepancies"
            ]
    assert failed["status"] == "failed_on_chain" and failed["tx_status"] == "FAILED"
    assert net.requests_served["getTransaction"] >= 8
    assert unanswered["status"] == "missing_expected" and unanswered["tx_status"] is None
    assert "could not say" in found["message"] and "-32601" in found["message"]


async def test_with_checks_off_pinned_records_settle_missing_unasked(database_url: str) -> None:
    """TX_OUTCOME_CHECKS_PER_POLL=0 never calls getTransaction: a pinned record without its
    event settles missing_expected at its deadline, as before outcomes existed."""
    net = small_network()
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN, tx_outcome_checks_per_poll=0)
        async with (
            service_with_expectations(settings) as (_, base, _),
            httpx.AsyncClient(timeout=10) as http,
        ):
            record = pinned(net, "quiet", tx_of("quiet"), net.latest_ledger - 5)
            assert (
                await http.post(f"{base}/api/expectations", json=record, headers=AUTH)
            ).is_success
            outcome = await wait_for_async(lambda: settled(http, base, "quiet"))
    assert outcome["status"] == "missing_expected" and outcome["tx_status"] is None
    assert "getTransaction" not in net.requests_served


async def wait_for_async(probe: Any, within: float = 30.0) -> Any:
    """Await `probe()` until it returns something truthy, or fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await probe()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within}s")
        await asyncio.sleep(0.05)
