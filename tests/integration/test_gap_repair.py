"""Gap filling through maintenance, against the simulated network: a batch a transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from obstore.store import LocalStore
from sqlalchemy import Connection, delete

from stellar_reconciler.backfill import Backfill
from stellar_reconciler.control import Controls
from stellar_reconciler.fetcher import BatchSizing, RangeFetcher
from stellar_reconciler.lake import LakeLayout
from stellar_reconciler.lake_source import LakeConfig
from stellar_reconciler.maintenance import Maintenance
from stellar_reconciler.metrics import Metrics
from stellar_reconciler.models import Batch, NetworkTip
from stellar_reconciler.rpc import RetryPolicy, StellarRpc, new_http_client
from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.simnet.lake import damage, publish
from stellar_reconciler.status import ServiceStatus
from stellar_reconciler.store import Store
from stellar_reconciler.store.schema import events, ledgers
from tests.integration.harness import (
    network_event_ids,
    network_ledgers,
    settings_for,
    stored_event_ids,
    stored_ledgers,
)

FAST = RetryPolicy(max_attempts=3, initial_backoff=0.005, max_backoff=0.02)


@pytest.fixture
def net() -> SimNetwork:
    return SimNetwork(
        SimNetConfig(seed=48, first_ledger=100, prebuilt_ledgers=200, events_per_ledger=6)
    )


@pytest.fixture
def url(net: SimNetwork) -> Iterator[str]:
    with serve_in_thread(net) as served:
        yield served


@pytest.fixture
async def rpc(url: str) -> AsyncIterator[StellarRpc]:
    client = new_http_client(5, "test")
    yield StellarRpc(client, url, FAST)
    await client.aclose()


class CommittedBefore:
    """A batch hook noting, for each batch, which of the gap's ledgers another connection
    already sees: what earlier transactions committed, not what this one is writing."""

    def __init__(self, reader: Store, gap: tuple[int, int]) -> None:
        self.reader = reader
        self.gap = gap
        self.seen: list[tuple[int, int, list[int]]] = []

    def __call__(self, _: Connection, batch: Batch) -> None:
        first, last = self.gap
        visible = [r.sequence for r in self.reader.list_ledgers(first, last, 1000)]
        self.seen.append((batch.first_ledger, batch.last_ledger, visible))


async def test_a_long_gap_is_filled_and_recorded_a_batch_at_a_time(
    database_url: str, store: Store, net: SimNetwork, rpc: StellarRpc
) -> None:
    """A 60-ledger gap arrives in more than one batch; when each batch is written the batches
    before it are already committed, and afterwards the gap has one record, resolved, and
    the stored ledgers and events are the network's."""
    await _stored_without(store, rpc, (200, 259))
    reader = Store.open(database_url)
    hook = CommittedBefore(reader, (200, 259))
    maintenance = Maintenance(
        rpc, store, ServiceStatus(), Metrics(), Controls(), [[]], 0, batch_hooks=[hook]
    )
    try:
        report = await maintenance.gaps.repair(await rpc.get_health())
    finally:
        reader.close()
    assert report.gaps_filled == [(200, 259)]
    assert len(hook.seen) > 1
    expected_visible: list[int] = []
    for first, last, visible in hook.seen:
        assert visible == expected_visible
        expected_visible = [*expected_visible, *range(first, last + 1)]
    assert expected_visible == list(range(200, 260))
    [record] = store.discrepancies.listing(kind="gap")
    assert (record["first_ledger"], record["last_ledger"], record["open"]) == (200, 259, False)
    assert stored_ledgers(database_url) == network_ledgers(net, 100, 299)
    assert stored_event_ids(database_url) == network_event_ids(net, 100, 299)


async def _stored_without(store: Store, rpc: StellarRpc, gap: tuple[int, int]) -> None:
    """Ledgers 100-299 stored, then those of `gap` deleted with their events."""
    store.ensure_stream(100, "fp")
    async for batch in RangeFetcher(rpc, [[]]).batches(100, 299, None):
        store.commit_batch(batch)
    with store.engine.begin() as conn:
        conn.execute(delete(events).where(events.c.ledger.between(*gap)))
        conn.execute(delete(ledgers).where(ledgers.c.sequence.between(*gap)))


async def _stored_with_an_old_gap(store: Store, net: SimNetwork, rpc: StellarRpc) -> NetworkTip:
    """Ledgers 100-299 stored but 150-169, and the RPC keeping only 200 on: the tip."""
    await _stored_without(store, rpc, (150, 169))
    net.set_retention_window(100)
    return await rpc.get_health()


async def test_a_gap_older_than_the_rpc_keeps_is_filled_from_the_lake_and_its_record_resolved(
    store: Store, net: SimNetwork, rpc: StellarRpc, tmp_path: Path
) -> None:
    """Ledgers 150-169 missing, the RPC keeping 200 on: without a lake the gap is a retention_gap;
    with LAKE_URL the next check fills it from the lake (events included), the record resolved
    saying so, and nothing is left to report."""
    tip = await _stored_with_an_old_gap(store, net, rpc)
    assert tip.oldest_ledger == 200
    plain = Maintenance(rpc, store, ServiceStatus(), Metrics(), Controls(), [[]], 0)
    assert (await plain.gaps.repair(tip)).retention_gaps == [(150, 169)]
    [gap] = store.discrepancies.listing("retention_gap")
    assert gap["open"]

    publish(net, LocalStore(str(tmp_path)), 100, 299, LakeLayout(net.passphrase, 4, 4))
    backfill = Backfill(store, rpc, LakeConfig(f"file://{tmp_path}"), [[]], BatchSizing())
    with_lake = Maintenance(
        rpc, store, ServiceStatus(), Metrics(), Controls(), [[]], 0, backfill=backfill
    )
    report = await with_lake.gaps.repair(tip)
    assert (report.gaps_filled, report.retention_gaps) == ([(150, 169)], [])
    [gap] = store.discrepancies.listing("retention_gap")
    assert not gap["open"] and "data lake" in gap["resolution"]
    ours = [
        (r.sequence, r.hash, r.previous_hash, r.event_count)
        for r in store.list_ledgers(100, 299, 1000)
    ]
    assert ours == network_ledgers(net, 100, 299)
    assert (await with_lake.gaps.repair(tip)).gaps_filled == []


async def test_with_the_settings_a_lake_gap_is_filled_in_chunks_and_a_failed_chunk_resumes(
    store: Store, database_url: str, net: SimNetwork, url: str, rpc: StellarRpc, tmp_path: Path
) -> None:
    """With the service's settings the check fills a gap older than the RPC keeps as
    `reconciler backfill` would (chunks of BACKFILL_CHUNK_LEDGERS, queued on PostgreSQL): a
    chunk whose lake object is corrupt writes nothing and leaves the retention_gap open, the
    other chunks stay written; once the object is fixed the next check writes only that
    chunk, the run's stitch mark reaches the gap's end and the record is resolved. The
    periodic check waits before trying a failing lake again."""
    tip = await _stored_with_an_old_gap(store, net, rpc)
    lake = LocalStore(str(tmp_path / "lake"), mkdir=True)
    layout = LakeLayout(net.passphrase, 4, 4)
    publish(net, lake, 100, 299, layout)
    damage(lake, layout.batch_key(160), "corrupt")
    lake_url = f"file://{tmp_path / 'lake'}"
    settings = settings_for(database_url, url, lake_url=lake_url, backfill_chunk_ledgers=5)
    backfill = Backfill(store, rpc, LakeConfig(lake_url), [[]], BatchSizing())
    maintenance = Maintenance(
        rpc,
        store,
        ServiceStatus(),
        Metrics(),
        Controls(),
        [[]],
        0,
        backfill=backfill,
        settings=settings,
    )

    report = await maintenance.gaps.repair(tip)
    assert (report.gaps_filled, report.retention_gaps) == ([], [(150, 169)])
    first_run = store.chunks.latest_run()
    assert first_run is not None
    chunks = [(c.first_ledger, c.last_ledger, c.state) for c in store.chunks.chunks(first_run)]
    assert chunks == [
        (150, 154, "done"),
        (155, 159, "done"),
        (160, 164, "failed"),
        (165, 169, "done"),
    ]
    assert store.chunks.summary(first_run)["verified_contiguous_through"] == 159
    [gap] = store.discrepancies.listing("retention_gap")
    assert gap["open"]
    # The periodic check does not plan another run at once while the lake fails; it waits
    # (an operator's verify, below, tries at once).
    report = await maintenance.gaps.repair(tip, scheduled=True)
    assert (report.gaps_filled, report.retention_gaps) == ([], [(160, 164)])
    assert store.chunks.latest_run() == first_run

    publish(net, lake, 160, 163, layout)
    report = await maintenance.gaps.repair(tip)
    assert (report.gaps_filled, report.retention_gaps) == ([(160, 164)], [])
    second_run = store.chunks.latest_run()
    assert second_run is not None and second_run != first_run
    summary = store.chunks.summary(second_run)
    assert (summary["chunks"]["done"], summary["verified_contiguous_through"]) == (1, 164)
    # The whole gap as first found, and what was left of it at the periodic check.
    gaps = store.discrepancies.listing("retention_gap")
    assert sorted((g["first_ledger"], g["last_ledger"]) for g in gaps) == [(150, 169), (160, 164)]
    assert all(not g["open"] and "data lake" in g["resolution"] for g in gaps)
    assert stored_ledgers(database_url) == network_ledgers(net, 100, 299)
    assert stored_event_ids(database_url) == network_event_ids(net, 100, 299)
