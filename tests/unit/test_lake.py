"""The SEP-54 lake reader: keys, configuration, a directory lake of the simnet, and its faults."""

from __future__ import annotations

import asyncio
import pickle
import shutil
from pathlib import Path

import obstore
import pytest
from obstore.store import LocalStore
from prometheus_client.parser import text_string_to_metric_families

from stellar_reconciler.errors import (
    LakeChainError,
    LakeError,
    LakeNetworkMismatchError,
    LakeObjectCorruptError,
    LakeObjectMissingError,
    LakeUnreachableError,
    MetaDecodeError,
)
from stellar_reconciler.lake import CONFIG_KEY, Lake, LakeLayout, open_store
from stellar_reconciler.meta_ledger import MetaLedger
from stellar_reconciler.metrics import Metrics
from stellar_reconciler.simnet import lake as simlake
from stellar_reconciler.simnet.config import SimNetConfig
from stellar_reconciler.simnet.network import SimNetwork
from tests.fixtures import FIXTURES

MAINNET = "Public Global Stellar Network ; September 2015"


def test_keys_are_the_sep54_examples() -> None:
    """2 ledgers a batch, 8 batches a partition: the key names SEP-54's example lists."""
    layout = LakeLayout(MAINNET, 2, 8)
    assert layout.batch_key(18) == "FFFFFFEF--16-31/FFFFFFED--18-19.xdr.zst"
    assert layout.batch_key(19) == "FFFFFFEF--16-31/FFFFFFED--18-19.xdr.zst"
    assert layout.batch_key(2) == "FFFFFFFF--0-15/FFFFFFFD--2-3.xdr.zst"
    assert layout.batch_key(15) == "FFFFFFFF--0-15/FFFFFFF1--14-15.xdr.zst"


def test_one_ledger_batches_drop_the_range_and_one_batch_partitions_drop_the_folder() -> None:
    """Batch size 1 names the batch by its one ledger; partition size 1 omits the partition; the
    real Galexie object's name (the older `zstd` suffix) comes out with that suffix."""
    assert LakeLayout(MAINNET, 1, 1).batch_key(2) == "FFFFFFFD--2.xdr.zst"
    real = LakeLayout(MAINNET, 1, 64000, extension="zstd").batch_key(53312000)
    assert real == "FCD285FF--53312000-53375999/FCD285FF--53312000.xdr.zstd"
    assert (
        LakeLayout(MAINNET, 1, 64000, ledgers_path="ledgers")
        .batch_key(5)
        .startswith("ledgers/FFFFFFFF--0-63999/")
    )


def test_configuration_object_parses_and_bad_ones_name_the_key() -> None:
    """A Galexie configuration parses; missing fields and other compressions are refused."""
    raw = b'{"networkPassphrase": "x", "version": "1.0", "compression": "zstd",'
    raw += b' "ledgersPerBatch": 1, "batchesPerPartition": 64000}'
    assert LakeLayout.parse(raw) == LakeLayout("x", 1, 64000)
    with pytest.raises(LakeObjectCorruptError, match=r"\.config\.json.*networkPassphrase"):
        LakeLayout.parse(b'{"ledgersPerBatch": 1}')
    with pytest.raises(LakeObjectCorruptError, match="gzip"):
        LakeLayout.parse(raw.replace(b'"zstd"', b'"gzip"'))


@pytest.mark.parametrize(
    "error",
    [
        LakeError("k", "d"),
        LakeUnreachableError("k", "d"),
        LakeObjectMissingError("k", "d"),
        LakeObjectCorruptError("k", "d"),
        LakeChainError("k", "d"),
        LakeNetworkMismatchError("k", "lake net", "rpc net"),
    ],
)
def test_lake_errors_pickle_and_name_the_key(error: LakeError) -> None:
    """Every lake error survives pickling (to cross processes) and its message names the key."""
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes, just made)
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert "'k'" in str(copy)


def test_meta_decode_error_pickles() -> None:
    """MetaDecodeError crosses processes too (a catch-up decodes in a child process)."""
    error = MetaDecodeError("batch says ledgers 1-2 but holds 3 metas")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes, just made)
    assert (type(copy), str(copy)) == (MetaDecodeError, str(error))


@pytest.fixture
def network() -> SimNetwork:
    return SimNetwork(SimNetConfig(seed=11, first_ledger=1000, prebuilt_ledgers=120))


def _read(store: LocalStore, passphrase: str, first: int, last: int) -> list[MetaLedger]:
    async def collect() -> list[MetaLedger]:
        lake = Lake(store, passphrase, prefetch=3)
        return [ledger async for ledger in lake.ledgers(first, last)]

    return asyncio.run(collect())


def _read_with(
    lake: Lake, first: int, last: int, previous_hash: str | None = None
) -> list[MetaLedger]:
    async def collect() -> list[MetaLedger]:
        return [ledger async for ledger in lake.ledgers(first, last, previous_hash)]

    return asyncio.run(collect())


def test_directory_lake_gives_the_simnet_events_id_for_id(
    network: SimNetwork, tmp_path: Path
) -> None:
    """A published directory lake read back: every event getEvents serves, none other, with
    equal fields; every ledger once, hashes as the RPC serves them."""
    store = LocalStore(str(tmp_path))
    simlake.publish(network, store, 1000, 1119, LakeLayout(network.passphrase, 4, 8))
    ledgers = _read(store, network.passphrase, 1001, 1118)
    assert [ledger.header.sequence for ledger in ledgers] == list(range(1001, 1119))
    assert all(
        ledger.header.hash == network.ledger_hash(ledger.header.sequence) for ledger in ledgers
    )
    got = {e.id: e for ledger in ledgers for e in ledger.events}
    truth = simlake.truth(network, 1001, 1118)
    assert list(got) == list(truth)
    for event_id, record in truth.items():
        event = got[event_id]
        assert event.value_xdr == record["value"]
        assert list(event.topics_xdr) == record["topic"]
        assert event.tx_hash == record["txHash"]
        assert event.in_successful_contract_call == record["inSuccessfulContractCall"]


def test_suffix_is_taken_from_the_listing_and_defaults_to_sep54s(
    network: SimNetwork, tmp_path: Path
) -> None:
    """A lake of `.xdr.zst` objects reads with `zst`; an empty lake assumes SEP-54's `zst`."""
    (tmp_path / "lake").mkdir()
    store = LocalStore(str(tmp_path / "lake"))
    simlake.publish(network, store, 1000, 1003)
    assert asyncio.run(Lake(store, network.passphrase).layout()).extension == "zst"
    (tmp_path / "empty").mkdir()
    empty = LocalStore(str(tmp_path / "empty"))
    obstore.put(empty, CONFIG_KEY, LakeLayout(network.passphrase, 1, 64).to_json())
    assert asyncio.run(Lake(empty, network.passphrase).layout()).extension == "zst"


def test_prefetch_keeps_at_most_the_configured_objects_ahead(
    network: SimNetwork, tmp_path: Path
) -> None:
    """With prefetch 3, taking the first ledger of 20 one-ledger objects has asked for the
    configuration and 3 objects, no more; the whole range asks for each object once."""
    store = LocalStore(str(tmp_path))
    simlake.publish(network, store, 1000, 1019)
    lake = Lake(store, network.passphrase, prefetch=3)

    async def first_only() -> int:
        ledgers = lake.ledgers(1000, 1019)
        ledger = await anext(ledgers)
        await ledgers.aclose()
        return ledger.header.sequence

    assert asyncio.run(first_only()) == 1000
    assert lake.objects_requested == 1 + 3
    whole = Lake(store, network.passphrase, prefetch=3)
    assert len(_read_with(whole, 1000, 1019)) == 20
    assert whole.objects_requested == 1 + 20


def test_first_ledger_must_chain_to_the_hash_given(network: SimNetwork, tmp_path: Path) -> None:
    """Reading on from a stored ledger: a first ledger whose previous hash is not the stored
    hash is LakeChainError; the right hash reads on."""
    store = LocalStore(str(tmp_path))
    keys = simlake.publish(network, store, 1000, 1004)
    lake = Lake(store, network.passphrase)
    assert len(_read_with(lake, 1002, 1004, network.ledger_hash(1001))) == 3
    with pytest.raises(LakeChainError, match=keys[2]):
        _read_with(lake, 1002, 1004, network.ledger_hash(1000))


def test_real_galexie_object_is_read_from_a_directory_lake(tmp_path: Path) -> None:
    """The real mainnet object, under the key and the `.xdr.zstd` suffix Galexie gave it, reads
    back as ledger 53312000: the reader finds the suffix in the lake's listing."""
    assert FIXTURES is not None
    layout = LakeLayout(MAINNET, 1, 64000, extension="zstd")
    target = tmp_path / layout.batch_key(53312000)
    target.parent.mkdir(parents=True)
    shutil.copy(Path(FIXTURES) / "mainnet_LedgerCloseMetaBatch_53312000.xdr.zstd", target)
    (tmp_path / CONFIG_KEY).write_bytes(layout.to_json())
    (ledger,) = _read(LocalStore(str(tmp_path)), MAINNET, 53312000, 53312000)
    assert ledger.header.protocol_version == 21


def test_lake_of_another_network_is_refused_naming_both(
    network: SimNetwork, tmp_path: Path
) -> None:
    """A lake whose configuration names another passphrase is refused before any ledger."""
    store = LocalStore(str(tmp_path))
    simlake.publish(network, store, 1000, 1003, passphrase=MAINNET)
    with pytest.raises(LakeNetworkMismatchError) as caught:
        _read(store, network.passphrase, 1000, 1003)
    assert MAINNET in str(caught.value) and network.passphrase in str(caught.value)


def test_missing_object_names_its_key(network: SimNetwork, tmp_path: Path) -> None:
    """A batch object that is not there is LakeObjectMissingError with its key."""
    store = LocalStore(str(tmp_path))
    keys = simlake.publish(network, store, 1000, 1009)
    simlake.damage(store, keys[5], "missing")
    with pytest.raises(LakeObjectMissingError, match=keys[5]):
        _read(store, network.passphrase, 1000, 1009)


def test_missing_configuration_is_missing_not_unreachable(tmp_path: Path) -> None:
    """An empty directory is not a lake: the configuration object is missing."""
    with pytest.raises(LakeObjectMissingError, match=r"\.config\.json"):
        _read(LocalStore(str(tmp_path)), MAINNET, 1, 1)


@pytest.mark.parametrize("how", ["truncated", "corrupt", "empty"])
def test_damaged_object_is_corrupt_naming_its_key(
    network: SimNetwork, tmp_path: Path, how: str
) -> None:
    """A truncated, bit-flipped or empty object is LakeObjectCorruptError naming its key, and
    the ledgers before it still come out."""
    store = LocalStore(str(tmp_path))
    keys = simlake.publish(network, store, 1000, 1009)
    simlake.damage(store, keys[6], how)
    seen: list[int] = []

    async def collect() -> None:
        async for ledger in Lake(store, network.passphrase).ledgers(1000, 1009):
            seen.append(ledger.header.sequence)

    with pytest.raises(LakeObjectCorruptError, match=keys[6]):
        asyncio.run(collect())
    assert seen == list(range(1000, 1006))


def test_object_missing_a_ledger_of_its_batch_is_corrupt(
    network: SimNetwork, tmp_path: Path
) -> None:
    """An object named for ledgers 1004-1007 that holds only 1004-1006 is refused by its key,
    rather than read as if ledger 1007 had no events."""
    store = LocalStore(str(tmp_path))
    layout = LakeLayout(network.passphrase, 4, 8)
    keys = simlake.publish(network, store, 1000, 1011, layout)
    metas = [simlake.close_meta(network, s) for s in range(1004, 1007)]
    obstore.put(store, keys[1], simlake.batch_object(metas, 1004, 1006))
    with pytest.raises(LakeObjectCorruptError, match=r"1004-1006, not the whole batch"):
        _read(store, network.passphrase, 1000, 1011)


def test_hashes_that_do_not_chain_name_the_object(network: SimNetwork, tmp_path: Path) -> None:
    """A lake ledger whose previous hash is not its parent's hash stops the read at its key."""
    store = LocalStore(str(tmp_path))
    simlake.publish(network, store, 1000, 1009)
    network.break_chain_at(1004)
    keys = simlake.publish(network, store, 1004, 1004)
    with pytest.raises(LakeChainError, match=keys[0]):
        _read(store, network.passphrase, 1000, 1009)


def test_lake_copy_that_differs_from_the_rpc_shows_in_the_events(
    network: SimNetwork, tmp_path: Path
) -> None:
    """An altered lake ledger still hash-checks (events are not in the header) but its events
    differ from getEvents' at exactly that ledger: what cross-source verification will catch."""
    store = LocalStore(str(tmp_path))
    simlake.publish(network, store, 1000, 1009, altered=[1003])
    ledgers = _read(store, network.passphrase, 1000, 1009)
    differing = {
        ledger.header.sequence
        for ledger in ledgers
        for event in ledger.events
        if event.value_xdr != simlake.truth(network, 1000, 1009)[event.id]["value"]
    }
    assert differing == {1003}


def test_unknown_scheme_is_unreachable_with_the_url_redacted() -> None:
    """A URL obstore cannot open is LakeUnreachableError; credentials in it are not shown."""
    with pytest.raises(LakeUnreachableError) as caught:
        open_store("ftp://user:secret@host/x")
    assert "secret" not in str(caught.value)


def test_every_object_read_is_observed_with_its_time_and_bytes(
    network: SimNetwork, tmp_path: Path
) -> None:
    """With the service's Metrics as observer: the configuration and five batches read are
    six `ok` fetches whose bytes add up to what the lake counted; the deleted sixth batch is
    one `missing` fetch and adds no bytes."""
    store = LocalStore(str(tmp_path))
    keys = simlake.publish(network, store, 1000, 1009)
    simlake.damage(store, keys[5], "missing")
    metrics = Metrics()
    lake = Lake(store, network.passphrase, prefetch=1, observer=metrics)
    with pytest.raises(LakeObjectMissingError):
        _read_with(lake, 1000, 1009)
    samples = {
        (sample.name, sample.labels.get("outcome")): sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
        if sample.name.startswith("reconciler_lake_")
    }
    assert samples[("reconciler_lake_fetch_duration_seconds_count", "ok")] == 6
    assert samples[("reconciler_lake_fetch_duration_seconds_count", "missing")] == 1
    assert samples[("reconciler_lake_fetched_bytes_total", None)] == lake.bytes_fetched > 0
