"""The simulated ledgers are real, hash-chained Stellar XDR, deterministic from the seed."""

from __future__ import annotations

import hashlib

import pytest
from stellar_sdk import xdr

from stellar_reconciler.simnet import SimNetConfig, SimNetConfigError, SimNetwork
from stellar_reconciler.simnet.chain import SKIP_1


@pytest.fixture(scope="module")
def net() -> SimNetwork:
    return SimNetwork(SimNetConfig(seed=3, first_ledger=90, prebuilt_ledgers=120))


def test_headers_decode_and_hash_to_their_ledger_hash(net: SimNetwork) -> None:
    """Every header is a LedgerHeader whose sha256 is the ledger's hash, for its sequence."""
    for sequence in range(net.first_ledger, net.latest_ledger + 1):
        header_xdr = net.header_xdr(sequence)
        header = xdr.LedgerHeader.from_xdr_bytes(header_xdr)
        assert header.ledger_seq.uint32 == sequence
        assert header.ledger_version.uint32 == 23
        assert hashlib.sha256(header_xdr).hexdigest() == net.ledger_hash(sequence)


def test_previous_ledger_hash_links_every_ledger(net: SimNetwork) -> None:
    """Each header's previousLedgerHash is the hash of the ledger before it."""
    for sequence in range(net.first_ledger + 1, net.latest_ledger + 1):
        header = xdr.LedgerHeader.from_xdr_bytes(net.header_xdr(sequence))
        assert header.previous_ledger_hash.hash.hex() == net.ledger_hash(sequence - 1)


def test_close_times_step_five_seconds_in_manual_mode(net: SimNetwork) -> None:
    """Manual mode advances close times by 5 s from the fixed genesis time."""
    header = xdr.LedgerHeader.from_xdr_bytes(net.header_xdr(100))
    assert header.scp_value.close_time.time_point.uint64 == net.close_time(100)
    assert net.close_time(101) - net.close_time(100) == 5
    assert net.close_time(net.first_ledger) == net.config.genesis_close_time


def test_close_times_follow_the_ledger_interval() -> None:
    """A 2 s interval gives 2 s close-time steps; sub-second intervals still step 1 s."""
    assert SimNetConfig(ledger_interval=2.0).close_time_step == 2
    assert SimNetConfig(ledger_interval=0.05).close_time_step == 1
    assert SimNetConfig(ledger_interval=0).manual


def test_skip_list_moves_every_fifty_ledgers(net: SimNetwork) -> None:
    """skipList[0] changes on ledgers that are multiples of 50, as in stellar-core."""

    def skip0(sequence: int) -> bytes:
        header = xdr.LedgerHeader.from_xdr_bytes(net.header_xdr(sequence))
        return bytes(header.skip_list[0].hash)

    assert skip0(SKIP_1 * 2 - 1) == skip0(SKIP_1 * 2 - 2)
    assert skip0(SKIP_1 * 2) != skip0(SKIP_1 * 2 - 1)
    assert skip0(SKIP_1 * 2 + 10) == skip0(SKIP_1 * 2)


def test_meta_is_a_valid_ledger_close_meta_around_the_header(net: SimNetwork) -> None:
    """metadataXdr parses as LedgerCloseMeta v1 holding the ledger's history entry."""
    meta = xdr.LedgerCloseMeta.from_xdr_bytes(net.meta_xdr(100))
    assert meta.v == 1
    entry = meta.v1.ledger_header
    assert entry.hash.hash.hex() == net.ledger_hash(100)
    assert entry.header.to_xdr_bytes() == net.header_xdr(100)
    assert meta.v1.tx_set.v1_tx_set.previous_ledger_hash.hash.hex() == net.ledger_hash(99)
    assert meta.to_xdr_bytes() == net.meta_xdr(100)


def test_meta_padding_makes_large_metas_on_demand() -> None:
    """meta_padding_bytes grows each meta to about that size, still valid XDR."""
    padded = SimNetwork(SimNetConfig(prebuilt_ledgers=3, meta_padding_bytes=300_000))
    raw = padded.meta_xdr(padded.latest_ledger)
    assert 300_000 <= len(raw) < 302_000
    meta = xdr.LedgerCloseMeta.from_xdr_bytes(raw)
    assert len(meta.v1.evicted_keys) == 7_500


def test_same_seed_gives_the_same_chain_and_events() -> None:
    """Two networks from one config agree on every hash and event; another seed does not."""
    config = SimNetConfig(seed=11, first_ledger=2, prebuilt_ledgers=30, events_per_ledger=4)
    a, b = SimNetwork(config), SimNetwork(config)
    assert a.record_ledgers(2, 31) == b.record_ledgers(2, 31)
    assert a.record_events(2, 31) == b.record_events(2, 31)
    a.close_ledgers(3)
    b.close_ledgers(3)
    assert a.ledger_hash(34) == b.ledger_hash(34)
    other = SimNetwork(SimNetConfig(seed=12, first_ledger=2, prebuilt_ledgers=30))
    assert other.ledger_hash(31) != a.ledger_hash(31)
    assert other.token_contract_id != a.token_contract_id


def test_break_chain_breaks_exactly_one_link() -> None:
    """After break_chain_at(L), L no longer links to L-1 but every later link still holds."""
    net = SimNetwork(SimNetConfig(first_ledger=2, prebuilt_ledgers=20))
    before = net.ledger_hash(10)
    net.break_chain_at(10)
    net.close_ledgers(2)
    ledgers = {row["sequence"]: row for row in net.record_ledgers(2, net.latest_ledger)}
    assert ledgers[10]["previousLedgerHash"] != ledgers[9]["hash"]
    assert ledgers[10]["hash"] != before
    for sequence in range(11, net.latest_ledger + 1):
        assert ledgers[sequence]["previousLedgerHash"] == ledgers[sequence - 1]["hash"]
    for sequence in range(3, 10):
        assert ledgers[sequence]["previousLedgerHash"] == ledgers[sequence - 1]["hash"]
    assert hashlib.sha256(net.header_xdr(10)).hexdigest() == net.ledger_hash(10)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("first_ledger", 0),
        ("prebuilt_ledgers", 0),
        ("event_every", 0),
        ("events_per_ledger", -1),
        ("retention_window", 0),
        ("ledger_interval", -1.0),
    ],
)
def test_bad_config_is_refused_naming_the_field(field: str, value: object) -> None:
    """An out-of-range setting raises SimNetConfigError naming the setting."""
    with pytest.raises(SimNetConfigError, match=field):
        SimNetConfig(**{field: value})  # type: ignore[arg-type]
