"""LakeSource: the lake as a BatchSource, in the shape, sizes and chain the worker commits."""

from __future__ import annotations

from pathlib import Path

import pytest
from obstore.store import LocalStore

from stellar_reconciler.config import Settings
from stellar_reconciler.errors import LakeChainError, LakeNetworkMismatchError
from stellar_reconciler.fetcher import BatchSizing
from stellar_reconciler.lake import Lake, LakeLayout
from stellar_reconciler.lake_source import LakeConfig, LakeSource
from stellar_reconciler.meta_ledger import EventSelector
from stellar_reconciler.models import Batch
from stellar_reconciler.simnet import lake as simlake
from stellar_reconciler.simnet.config import SimNetConfig
from stellar_reconciler.simnet.network import SimNetwork

FIRST, LAST = 1024, 1087


@pytest.fixture(scope="module")
def network() -> SimNetwork:
    return SimNetwork(
        SimNetConfig(seed=31, first_ledger=FIRST, prebuilt_ledgers=64, events_per_ledger=6)
    )


@pytest.fixture
def lake(network: SimNetwork, tmp_path: Path) -> Lake:
    store = LocalStore(str(tmp_path))
    simlake.publish(network, store, FIRST, LAST, LakeLayout(network.passphrase, 4, 4))
    return Lake(store, network.passphrase, prefetch=2)


async def batches_of(
    source: LakeSource, first: int, last: int, previous: str | None, into: list[Batch] | None = None
) -> list[Batch]:
    """The batches of first..last, each also appended to `into` as it comes."""
    seen = [] if into is None else into
    async for batch in source.follow(first, last, previous):
        seen.append(batch)
    return seen


async def test_batches_chain_and_hold_every_event_as_the_rpc_serves_it(
    network: SimNetwork, lake: Lake
) -> None:
    """1030-1080 in batches of at most 10 ledgers: consecutive, each chained to the one before
    and the first to ledger 1029's hash, the headers the network's, the events exactly the
    network's getEvents records, decoded."""
    source = LakeSource(lake, EventSelector(), BatchSizing(max_ledgers=10, target_events=10_000))
    previous = network.record_ledgers(1029, 1029)[0]["hash"]
    batches = await batches_of(source, 1030, 1080, previous)
    assert [(b.first_ledger, b.last_ledger) for b in batches][:2] == [(1030, 1039), (1040, 1049)]
    assert batches[-1].last_ledger == 1080
    ledgers = [ledger for batch in batches for ledger in batch.ledgers]
    assert [(x.sequence, x.hash, x.previous_hash, x.event_count) for x in ledgers] == [
        (r["sequence"], r["hash"], r["previousLedgerHash"], r["eventCount"])
        for r in network.record_ledgers(1030, 1080)
    ]
    assert ledgers[0].previous_hash == previous
    events = [event for batch in batches for event in batch.events]
    truth = network.record_events(1030, 1080)
    assert [(e.id, e.tx_hash, list(e.topics_xdr), e.value_xdr) for e in events] == [
        (r["id"], r["txHash"], r["topic"], r["value"]) for r in truth
    ]


async def test_a_batch_is_cut_once_it_holds_the_target_events(lake: Lake) -> None:
    """A target of 20 events cuts batches at the first ledger boundary past 20 events."""
    source = LakeSource(lake, EventSelector(), BatchSizing(max_ledgers=1000, target_events=20))
    batches = await batches_of(source, FIRST, LAST, None)
    assert len(batches) > 5
    for batch in batches[:-1]:
        without_last = sum(1 for e in batch.events if e.ledger < batch.last_ledger)
        assert len(batch.events) >= 20 > without_last


async def test_the_selector_keeps_only_the_configured_contract(
    network: SimNetwork, lake: Lake
) -> None:
    """CONTRACT_IDS of one contract: only its events, as getEvents filtered by it serves."""
    contract = network.record_events(FIRST, FIRST)[0]["contractId"]
    settings = Settings.from_env(contract_ids=contract, lake_url="file:///tmp/x")
    config = LakeConfig.from_settings(settings)
    assert config is not None and config.selector.contract_ids == {contract}
    source = LakeSource(lake, config.selector, BatchSizing())
    [batch] = await batches_of(source, FIRST, LAST, None)
    expected = [r["id"] for r in network.record_events(FIRST, LAST) if r["contractId"] == contract]
    assert [e.id for e in batch.events] == expected and expected
    assert LakeConfig.from_settings(Settings.from_env(lake_url="")) is None


async def test_a_first_ledger_that_does_not_chain_yields_nothing_and_names_the_object(
    lake: Lake,
) -> None:
    """A stored previous hash the lake's first ledger does not follow: LakeChainError naming
    the object of that ledger, before any batch is handed over."""
    source = LakeSource(lake, EventSelector(), BatchSizing(max_ledgers=2))
    seen: list[Batch] = []
    with pytest.raises(LakeChainError, match=r"lake object '.*--1040-1043\.xdr\.zst'"):
        await batches_of(source, 1040, 1050, "00" * 32, seen)
    assert seen == []


async def test_a_lake_of_another_network_is_refused(network: SimNetwork, tmp_path: Path) -> None:
    """The lake's configuration names another network: refused before any object is read."""
    store = LocalStore(str(tmp_path))
    simlake.publish(network, store, FIRST, LAST, passphrase="Another ; 2026")
    source = LakeSource(Lake(store, network.passphrase), EventSelector(), BatchSizing())
    with pytest.raises(LakeNetworkMismatchError, match="Another ; 2026"):
        await batches_of(source, FIRST, LAST, None)
