"""The simulated contract events look like protocol-23 Stellar events, at the density asked."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from stellar_sdk import StrKey, scval, xdr

from stellar_reconciler.simnet import SimNetConfig, SimNetwork
from stellar_reconciler.simnet.cursor import TX_MASK, Cursor

ESCROW_NAMES = {
    "job_posted",
    "job_funded",
    "milestone_released",
    "dispute_opened",
    "dispute_resolved",
    "escrow_refunded",
}


@pytest.fixture(scope="module")
def net() -> SimNetwork:
    return SimNetwork(
        SimNetConfig(seed=5, first_ledger=1000, prebuilt_ledgers=300, events_per_ledger=20)
    )


@pytest.fixture(scope="module")
def events(net: SimNetwork) -> list[dict[str, Any]]:
    return net.record_events(net.first_ledger, net.latest_ledger)


def _native(value: str) -> Any:
    return scval.to_native(xdr.SCVal.from_xdr(value))


def test_mean_density_matches_the_config(net: SimNetwork, events: list[dict[str, Any]]) -> None:
    """events_per_ledger is the mean count of events per ledger."""
    mean = len(events) / (net.latest_ledger - net.first_ledger + 1)
    assert 18 <= mean <= 22


def test_sparse_networks_put_events_only_on_multiples_of_event_every() -> None:
    """With event_every=50 only ledgers at offsets 0, 50, 100 ... carry events."""
    sparse = SimNetwork(SimNetConfig(first_ledger=10, prebuilt_ledgers=160, event_every=50))
    ledgers = {e["ledger"] for e in sparse.record_events(10, sparse.latest_ledger)}
    assert ledgers == {10, 60, 110, 160}
    silent = SimNetwork(SimNetConfig(prebuilt_ledgers=20, events_per_ledger=0))
    assert silent.record_events(silent.first_ledger, silent.latest_ledger) == []


def test_ids_are_unique_sorted_and_decode_to_the_event(events: list[dict[str, Any]]) -> None:
    """Ids strictly increase and decode to the event's ledger, transaction and operation."""
    ids = [e["id"] for e in events]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    for event in events:
        cursor = Cursor.parse(event["id"])
        assert cursor.ledger == event["ledger"]
        assert cursor.tx == event["transactionIndex"]
        assert cursor.op == event["operationIndex"]


def test_fee_events_use_transaction_level_slots(
    net: SimNetwork, events: list[dict[str, Any]]
) -> None:
    """Fee charges sit at tx 0 with one counter per ledger; refunds at the last tx index."""
    fees = [e for e in events if _native(e["topic"][0]) == "fee"]
    assert fees
    by_ledger: dict[int, list[int]] = {}
    for event in fees:
        cursor = Cursor.parse(event["id"])
        assert event["contractId"] == net.native_contract_id
        assert cursor.op == 0
        assert cursor.tx in (0, TX_MASK)
        amount = _native(event["value"])
        assert (amount > 0) == (cursor.tx == 0)
        if cursor.tx == 0:
            by_ledger.setdefault(event["ledger"], []).append(cursor.event)
    for indexes in by_ledger.values():
        assert indexes == list(range(len(indexes)))
    assert any(not e["inSuccessfulContractCall"] for e in fees)


def test_token_events_carry_sac_style_topics(net: SimNetwork, events: list[dict[str, Any]]) -> None:
    """transfer/mint topics are [symbol, Address, Address, asset string] with an i128 value."""
    token = [e for e in events if e["contractId"] == net.token_contract_id]
    names = Counter(_native(e["topic"][0]) for e in token)
    assert set(names) == {"transfer", "mint"}
    for event in token:
        topics = [xdr.SCVal.from_xdr(t) for t in event["topic"]]
        assert [t.type for t in topics] == [
            xdr.SCValType.SCV_SYMBOL,
            xdr.SCValType.SCV_ADDRESS,
            xdr.SCValType.SCV_ADDRESS,
            xdr.SCValType.SCV_STRING,
        ]
        assert StrKey.is_valid_ed25519_public_key(scval.to_native(topics[1]).address)
        asset = scval.to_native(topics[3])
        assert asset == "native" or asset.split(":")[0] in ("USDC", "EURC")
        assert xdr.SCVal.from_xdr(event["value"]).type == xdr.SCValType.SCV_I128
    amounts = [_native(e["value"]) for e in token]
    assert all(a >= 1 for a in amounts)
    assert any(a > 2**64 for a in amounts)


def test_escrow_events_carry_job_ids_and_sorted_maps(
    net: SimNetwork, events: list[dict[str, Any]]
) -> None:
    """Escrow events start with their name and a u64 job id; map values have sorted symbol keys."""
    escrow = [e for e in events if e["contractId"] == net.escrow_contract_id]
    assert {_native(e["topic"][0]) for e in escrow} == ESCROW_NAMES
    for event in escrow:
        assert xdr.SCVal.from_xdr(event["topic"][1]).type == xdr.SCValType.SCV_U64
        value = xdr.SCVal.from_xdr(event["value"])
        if value.type == xdr.SCValType.SCV_MAP:
            keys = [entry.key.sym.sc_symbol.decode() for entry in value.map.sc_map]
            assert keys == sorted(keys)


def test_contract_ids_are_valid_and_distinct(net: SimNetwork) -> None:
    """The token, escrow and native contract ids are distinct valid C... strkeys."""
    ids = {net.token_contract_id, net.escrow_contract_id, net.native_contract_id}
    assert len(ids) == 3
    assert all(StrKey.is_valid_contract(c) for c in ids)


def test_system_events_appear_when_asked() -> None:
    """system_event_every=2 puts one `system` event in every other event-carrying ledger."""
    net = SimNetwork(SimNetConfig(first_ledger=2, prebuilt_ledgers=10, system_event_every=2))
    system = [e for e in net.record_events(2, 11) if e["type"] == "system"]
    assert sorted(e["ledger"] for e in system) == [2, 4, 6, 8, 10]
    assert all(e["contractId"] == net.escrow_contract_id for e in system)


def test_every_event_has_the_getevents_fields_and_types(events: list[dict[str, Any]]) -> None:
    """Records carry getEvents' fields with its JSON types (ledgerClosedAt ISO-8601 with Z)."""
    for event in events[:200]:
        assert isinstance(event["ledger"], int)
        assert event["ledgerClosedAt"].endswith("Z")
        assert len(event["txHash"]) == 64
        assert int(event["txHash"], 16) >= 0
        assert isinstance(event["inSuccessfulContractCall"], bool)
        assert 1 <= len(event["topic"]) <= 4
