"""Cross-source verification end to end: `reconciler verify --against rpc|lake|both` on a
simulated network served over JSON-RPC and published as a SEP-54 lake in a directory."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from obstore.store import LocalStore

from stellar_reconciler.lake import CONFIG_KEY, LakeLayout, open_store
from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.simnet import lake as simlake
from stellar_reconciler.store import Store
from stellar_reconciler.verification import run_verification
from tests.integration.harness import (
    network_event_ids,
    running_service,
    settings_for,
    stored_event_ids,
    wait_for,
)
from tests.integration.test_cli_verify import run_in
from tests.integration.test_lake_s3 import BUCKET, s3_endpoint  # noqa: F401 (a fixture)
from tests.integration.test_startup import NETWORK_A, fill

SEED = 43


def small_network() -> SimNetwork:
    return SimNetwork(
        SimNetConfig(
            seed=SEED,
            first_ledger=10,
            prebuilt_ledgers=12,
            events_per_ledger=4,
            network_passphrase=NETWORK_A,
        )
    )


def ledger_with_events(net: SimNetwork) -> int:
    """A ledger of `net` with at least two events (the lake fault changes the first)."""
    for sequence in range(net.first_ledger + 2, net.latest_ledger + 1):
        events = net.ledger_events(sequence)
        if events is not None and len(events) >= 2:
            return sequence
    raise AssertionError("the simulated network has no ledger with two events")


def publish(net: SimNetwork, folder: Path, **options: Any) -> tuple[str, list[str]]:
    """The whole history of `net` as a lake in `folder`; its LAKE_URL and batch keys."""
    folder.mkdir()
    keys = simlake.publish(
        net, LocalStore(str(folder)), net.first_ledger, net.latest_ledger, **options
    )
    return f"file://{folder}", keys


def source_mismatches(database_url: str) -> list[dict[str, Any]]:
    store = Store.open(database_url)
    try:
        return store.discrepancies.listing("source_mismatch", None, 100, None)
    finally:
        store.close()


def stored_values(database_url: str, first: int, last: int) -> dict[str, str]:
    store = Store.open(database_url)
    try:
        return {e.id: e.value_xdr for e in store.fingerprints(first, last)}
    finally:
        store.close()


async def test_a_lake_ledger_that_differs_is_named_once(database_url: str, tmp_path: Path) -> None:
    """The lake's copy of one ledger carries a changed event value: `--against both` exits 1
    naming that ledger and the lake, opens one source_mismatch (subject lake, the event id as
    changed, the store and the RPC agreeing), changes nothing stored, and a second run opens
    no second record. `--against rpc` alone (today's verify) sees nothing wrong. Once the
    lake object is published again correctly, the next `--against both` is clean and resolves
    the record."""
    net = small_network()
    odd = ledger_with_events(net)
    await fill(database_url, net)
    lake_url, _ = publish(net, tmp_path / "lake", altered=[odd])
    env = {"DATABASE_URL": database_url, "LAKE_URL": lake_url}
    before = stored_values(database_url, net.first_ledger, net.latest_ledger)
    with serve_in_thread(net) as url:
        runs = [
            await asyncio.to_thread(
                run_in, tmp_path, "verify", "--against", against, STELLAR_RPC_URL=url, **env
            )
            for against in ("both", "both", "rpc")
        ]
    first, second, rpc_only = runs
    assert first.returncode == 1, first.stdout + first.stderr
    assert f"ledger={odd}, source=lake, changed=1" in first.stdout
    assert second.returncode == 1 and f"ledger={odd}, source=lake" in second.stdout
    assert rpc_only.returncode == 0, rpc_only.stdout + rpc_only.stderr
    [record] = source_mismatches(database_url)
    changed_id = net.event_id_at(odd, 0)
    assert record["open"] and record["subject"] == "lake"
    assert (record["first_ledger"], record["last_ledger"]) == (odd, odd)
    assert record["found"]["changed"] == [changed_id]
    assert record["expected"] == {"agreeing": ["store", "rpc"]}
    assert f"ledger {odd}: the lake disagrees with store and rpc" in record["message"]
    assert stored_values(database_url, net.first_ledger, net.latest_ledger) == before

    simlake.publish(net, LocalStore(str(tmp_path / "lake")), odd, odd)
    with serve_in_thread(net) as url:
        fixed = await asyncio.to_thread(
            run_in, tmp_path, "verify", "--against", "both", STELLAR_RPC_URL=url, **env
        )
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    [record] = source_mismatches(database_url)
    assert not record["open"] and record["resolved_by"] == "auto"
    assert f"in agreement on ledger {odd}" in record["resolution"]


async def test_a_healthy_lake_alone_is_clean(database_url: str, tmp_path: Path) -> None:
    """`--against lake` with a lake equal to the network: exit 0, every stored ledger checked,
    no source_mismatch, and the RPC never asked (its URL refuses connections)."""
    net = small_network()
    await fill(database_url, net)
    lake_url, _ = publish(net, tmp_path / "lake", layout=LakeLayout(NETWORK_A, 1, 4))
    result = await asyncio.to_thread(
        run_in,
        tmp_path,
        "verify",
        "--against",
        "lake",
        DATABASE_URL=database_url,
        LAKE_URL=lake_url,
        STELLAR_RPC_URL="http://127.0.0.1:1/",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lake" in result.stdout and "none" in result.stdout
    assert f"{net.latest_ledger - net.first_ledger + 1}" in result.stdout
    assert source_mismatches(database_url) == []


async def test_a_lake_of_another_network_or_a_missing_object_is_a_clear_error(
    database_url: str, tmp_path: Path
) -> None:
    """A lake of another network: exit 2, one error line naming the configuration object and
    both networks. A deleted batch object: exit 1 naming its key, whether the lake is asked
    alone or beside the RPC. Neither opens a discrepancy."""
    net = small_network()
    await fill(database_url, net)
    other_url, _ = publish(net, tmp_path / "other", passphrase="Another network ; test")
    lake_url, keys = publish(net, tmp_path / "lake")
    simlake.damage(LocalStore(str(tmp_path / "lake")), keys[3], "missing")
    db = {"DATABASE_URL": database_url}
    with serve_in_thread(net) as url:
        other = await asyncio.to_thread(
            run_in, tmp_path, "verify", "--against", "lake", LAKE_URL=other_url, **db
        )
        missing_both = await asyncio.to_thread(
            run_in,
            tmp_path,
            "verify",
            "--against",
            "both",
            STELLAR_RPC_URL=url,
            LAKE_URL=lake_url,
            **db,
        )
    missing_lake = await asyncio.to_thread(
        run_in, tmp_path, "verify", "--against", "lake", LAKE_URL=lake_url, **db
    )
    assert other.returncode == 2, other.stdout + other.stderr
    assert f"lake object '{CONFIG_KEY}'" in other.stderr
    assert "Another network ; test" in other.stderr and NETWORK_A in other.stderr
    assert "Traceback" not in other.stderr
    for result in (missing_both, missing_lake):
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"lake object '{keys[3]}': is not in the lake" in result.stderr
        assert "Traceback" not in result.stderr
    assert source_mismatches(database_url) == []


async def test_an_rpc_outvoted_by_store_and_lake_is_named_and_not_trusted(
    database_url: str, tmp_path: Path
) -> None:
    """The RPC serves a changed value on every read after the first, and the lake holds the
    truth: `--against both` names the RPC (store and lake agree) and leaves the stored value
    as it was, where `--against rpc` would have re-indexed it from the RPC."""
    net = small_network()
    odd = ledger_with_events(net)
    lied = net.alter_event(net.event_id_at(odd, 1))
    await fill(database_url, net)
    lake_url, _ = publish(net, tmp_path / "lake")
    before = stored_values(database_url, odd, odd)
    with serve_in_thread(net) as url:
        result = await asyncio.to_thread(
            run_in,
            tmp_path,
            "verify",
            "--against",
            "both",
            DATABASE_URL=database_url,
            LAKE_URL=lake_url,
            STELLAR_RPC_URL=url,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"ledger={odd}, source=rpc, changed=1" in result.stdout
    [record] = source_mismatches(database_url)
    assert record["subject"] == "rpc" and record["found"]["changed"] == [lied]
    assert record["expected"] == {"agreeing": ["store", "lake"]}
    assert stored_values(database_url, odd, odd) == before
    assert before[lied] == simlake.truth(net, odd, odd)[lied]["value"]


async def test_periodic_verification_asks_the_lake_too(database_url: str, tmp_path: Path) -> None:
    """The running service with LAKE_URL: an event the RPC left out of its first answer is
    re-indexed as ever (the RPC's second read and the lake agree against the store), while a
    ledger whose lake copy differs opens a source_mismatch naming the lake, which stays open
    and makes health 503."""
    net = SimNetwork(
        SimNetConfig(seed=44, first_ledger=100, prebuilt_ledgers=200, events_per_ledger=6)
    )
    dropped = net.drop_event_at(150, 2)
    odd = next(s for s in range(200, 260) if len(net.ledger_events(s) or ()) >= 2)
    lake_url, _ = publish(net, tmp_path / "lake", altered=[odd])
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, verify_every_ledgers=64, lake_url=lake_url)
        async with running_service(settings) as (service, _):
            await wait_for(lambda: service.store.marker("verified") == 291, what="verification")
            await wait_for(lambda: not service.status.health()["healthy"], what="health 503")
    repaired, named = sorted(source_mismatches(database_url), key=lambda r: r["id"])
    assert repaired["resolved_by"] == "auto" and dropped in str(repaired["found"])
    assert repaired["first_ledger"] <= 150 <= repaired["last_ledger"]
    assert named["open"] and named["subject"] == "lake" and named["first_ledger"] == odd
    assert stored_event_ids(database_url) == network_event_ids(net, 100, 299)


async def test_periodic_verification_goes_on_past_a_damaged_lake_object(
    database_url: str, tmp_path: Path
) -> None:
    """A corrupt lake object under the running service: its range is still verified against
    the RPC (a dropped event is repaired), the failure is the status's last error naming the
    object key, and no source_mismatch blames any source for it."""
    net = SimNetwork(
        SimNetConfig(seed=45, first_ledger=100, prebuilt_ledgers=200, events_per_ledger=6)
    )
    dropped = net.drop_event_at(150, 2)
    lake_url, keys = publish(net, tmp_path / "lake")
    broken = keys[140 - net.first_ledger]
    simlake.damage(LocalStore(str(tmp_path / "lake")), broken, "corrupt")
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, verify_every_ledgers=64, lake_url=lake_url)
        async with running_service(settings) as (service, _):
            await wait_for(lambda: service.store.marker("verified") == 291, what="verification")
            assert broken in (service.status.last_error or "")
            assert service.status.health()["healthy"]
    [repaired] = source_mismatches(database_url)
    assert repaired["resolved_by"] == "auto" and dropped in str(repaired["found"])
    assert stored_event_ids(database_url) == network_event_ids(net, 100, 299)


@pytest.mark.slow
async def test_a_differing_ledger_is_named_through_an_s3_lake(
    database_url: str,
    s3_endpoint: str,  # noqa: F811 (the fixture imported above)
) -> None:
    """The same cross-check with the lake in a real S3-compatible server on loopback
    (LAKE_URL s3://..., LAKE_ENDPOINT_URL): the altered ledger is named, source lake."""
    net = small_network()
    odd = ledger_with_events(net)
    await fill(database_url, net)
    prefix = f"crosscheck-{database_url.rsplit('/', 1)[-1].replace('.', '-')}"
    store = open_store(f"s3://{BUCKET}/{prefix}", s3_endpoint)
    simlake.publish(net, store, net.first_ledger, net.latest_ledger, altered=[odd])
    with serve_in_thread(net) as url:
        settings = settings_for(
            database_url, url, lake_url=f"s3://{BUCKET}/{prefix}", lake_endpoint_url=s3_endpoint
        )
        report = await run_verification(settings, None, None, "both")
    assert report["clean"] is False
    assert [(m["ledger"], m["source"]) for m in report["source_mismatches"]] == [(odd, "lake")]
    [record] = source_mismatches(database_url)
    assert record["subject"] == "lake" and record["first_ledger"] == odd
