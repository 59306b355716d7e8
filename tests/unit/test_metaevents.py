"""Events read out of ledger metadata against the real fixtures, stellar-sdk and the simnet."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stellar_sdk import xdr

from stellar_reconciler.config import Settings
from stellar_reconciler.decode import decode_event, parse_event_id
from stellar_reconciler.errors import MetaDecodeError
from stellar_reconciler.meta_ledger import EventSelector, rpc_record
from stellar_reconciler.metaevents import batch_ledgers, ledger_events, transaction_events
from stellar_reconciler.metasdk import ledger_events_with_sdk, transaction_events_with_sdk
from stellar_reconciler.models import RawEvent
from stellar_reconciler.pager import build_filter_sets
from stellar_reconciler.rpc import parse_event
from stellar_reconciler.simnet import filters as simnet_filters
from stellar_reconciler.simnet.config import SimNetConfig
from stellar_reconciler.simnet.lake import close_meta
from stellar_reconciler.simnet.network import SimNetwork
from tests.fixtures import FIXTURES, load

assert FIXTURES is not None
TESTNET_SAC = "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC"
MAINNET_SAC = "CAS3J7GYLGXMF6TDJBBYYSE3HQ6BBSMLNUQ34T6TZMYMW2EVH34XOWMA"
FEE_SYMBOL = "AAAADwAAAANmZWUA"


def _mainnet_batch() -> bytes:
    raw = (Path(FIXTURES) / "mainnet_LedgerCloseMetaBatch_53312000.xdr.zstd").read_bytes()
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)) as reader:
        return reader.read()


def _p25_meta() -> bytes:
    return base64.b64decode(load("testnet_getLatestLedger_1283415_p25.result.json")["metadataXdr"])


def test_protocol_25_ledger_yields_the_fee_and_the_transfer_with_rpc_ids() -> None:
    """Ledger 1283415 (meta v2, tx meta v4): tx-level fee at (tx 0, op 0, 0), SAC transfer at
    (tx 1, op 0, 0), both from the one transaction, in id order, header hash = the RPC's id."""
    latest = load("testnet_getLatestLedger_1283415_p25.result.json")
    ledger = ledger_events(_p25_meta())
    assert ledger.header.sequence == 1283415 == latest["sequence"]
    assert ledger.header.hash == latest["id"]
    assert ledger.header.protocol_version == 25
    fee, transfer = ledger.events
    toid = 1283415 << 32
    assert fee.id == f"{toid:019d}-0000000000"
    assert transfer.id == f"{toid | 1 << 12:019d}-0000000000"
    assert parse_event_id(transfer.id) == (1283415, 1, 0, 0)
    assert fee.tx_hash == transfer.tx_hash
    assert (fee.transaction_index, fee.operation_index) == (0, 0)
    assert (transfer.transaction_index, transfer.operation_index) == (1, 0)
    assert fee.in_successful_contract_call and transfer.in_successful_contract_call
    assert fee.ledger_closed_at == transfer.ledger_closed_at == "2026-03-02T01:57:09Z"


def test_fee_event_has_the_shape_the_rpc_serves_for_fee_events() -> None:
    """The extracted fee event has the keys, JSON types, contract, first topic and value type of
    the RPC's recorded fee events (testnet_getEvents_any), and the same id rule (tx 0, op 0)."""
    recorded = load("testnet_getEvents_any.result.json")["events"]
    fee = rpc_record(ledger_events(_p25_meta()).events[0])
    for served in recorded:
        assert set(fee) == set(served)
        assert {k: type(v) for k, v in fee.items()} == {k: type(v) for k, v in served.items()}
        assert fee["contractId"] == served["contractId"] == TESTNET_SAC
        assert fee["topic"][0] == served["topic"][0] == FEE_SYMBOL  # type: ignore[index]
        assert len(fee["topic"]) == len(served["topic"]) == 2  # type: ignore[arg-type]
        assert parse_event_id(served["id"])[1:3] == parse_event_id(str(fee["id"]))[1:3] == (0, 0)
    assert fee["value"] == recorded[0]["value"]  # both charged 100 stroops
    assert decode_event(ledger_events(_p25_meta()).events[0]).value == "100"


def test_transfer_event_topics_match_the_rpc_native_transfer() -> None:
    """The SAC transfer's topics are encoded byte for byte as the RPC serves native transfers:
    symbol transfer, two addresses, string native; value an i128 of 100,000,000,000."""
    served = load("testnet_getEvents_native_transfers.result.json")["events"][0]
    transfer = ledger_events(_p25_meta()).events[1]
    assert transfer.contract_id == served["contractId"]
    assert transfer.topics_xdr[0] == served["topic"][0]
    assert transfer.topics_xdr[3] == served["topic"][3]
    assert len(transfer.topics_xdr) == len(served["topic"]) == 4
    decoded = decode_event(transfer)
    assert decoded.topics[0] == "transfer" and decoded.topics[3] == "native"
    assert decoded.topics[1].startswith("G") and decoded.topics[2].startswith("G")
    assert decoded.value == "100000000000"
    assert decoded.type == served["type"] == "contract"


def test_mainnet_galexie_object_holds_one_hash_checked_ledger_without_events() -> None:
    """The real Galexie object: ledger 53312000, protocol 21, header hash as stellar-sdk computes
    it; its one Soroban transaction has 21 diagnostic events and no contract events, so none."""
    data = _mainnet_batch()
    (ledger,) = batch_ledgers(data)
    reference = xdr.LedgerCloseMetaBatch.from_xdr_bytes(data)
    entry = reference.ledger_close_metas[0].v1.ledger_header
    assert ledger.header.sequence == 53312000
    assert ledger.header.protocol_version == 21
    assert ledger.header.hash == entry.hash.hash.hex()
    assert ledger.header.previous_hash == entry.header.previous_ledger_hash.hash.hex()
    diagnostics = [
        len(t.tx_apply_processing.v3.soroban_meta.diagnostic_events)
        for t in reference.ledger_close_metas[0].v1.tx_processing
        if t.tx_apply_processing.v3.soroban_meta is not None
    ]
    assert diagnostics == [21]
    assert ledger.events == ()
    assert ledger == ledger_events_with_sdk(reference.ledger_close_metas[0].to_xdr_bytes())


def test_mainnet_v4_transaction_metas_agree_with_sdk_and_fees_add_up() -> None:
    """All 50 mainnet TransactionMeta v4: the walker equals stellar-sdk event for event, each
    transaction's fee charge and refunds add up to the feeCharged of its own result."""
    total = 0
    for record in load("mainnet_getTransactions_corpus.json")["records"]:
        meta = base64.b64decode(record["resultMetaXdr"])
        args = (63800108, 7, record["txHash"], True, "2026-08-04T00:00:00Z")
        events = transaction_events(meta, *args)
        assert events == transaction_events_with_sdk(meta, *args)
        fees = [decode_event(e) for e in events if e.topics_xdr[0] == FEE_SYMBOL]
        assert fees and all(f.contract_id == MAINNET_SAC for f in fees)
        assert fees[0].transaction_index == 0  # the charge, before all transactions
        charged = xdr.TransactionResult.from_xdr(record["resultXdr"]).fee_charged.int64
        assert sum(int(f.value) for f in fees) == charged
        assert all(e.tx_hash == record["txHash"] for e in events)
        total += len(events)
    assert total == 213


def test_protocol_22_ledger_agrees_with_sdk_and_checks_its_header_hash() -> None:
    """getLedgers' testnet metas (v1, 4 txs in the second): walker equals stellar-sdk, and the
    header hash equals the `hash` the RPC served."""
    for served in load("testnet_getLedgers_36233-36234.result.json")["ledgers"]:
        meta = base64.b64decode(served["metadataXdr"])
        ledger = ledger_events(meta)
        assert ledger == ledger_events_with_sdk(meta)
        assert ledger.header.hash == served["hash"]
        assert ledger.header.sequence == served["sequence"]


def test_header_whose_hash_does_not_match_is_refused() -> None:
    """A LedgerCloseMeta whose history entry hash is not sha256 of its header is an error."""
    meta = bytearray(_p25_meta())
    meta[8] ^= 0xFF  # inside the history entry's hash (after v and ext)
    with pytest.raises(MetaDecodeError, match="hashes to"):
        ledger_events(bytes(meta))


@pytest.mark.parametrize("cut", [1, 7, 100, 1000, 2000, 2323])
def test_truncated_meta_is_an_error_not_fewer_events(cut: int) -> None:
    """Any prefix of a meta is refused with MetaDecodeError (fast path and fallback alike)."""
    with pytest.raises(MetaDecodeError):
        ledger_events(_p25_meta()[:cut])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    per_ledger=st.integers(0, 40),
    system_every=st.integers(0, 3),
    fee_events=st.booleans(),
    offset=st.integers(0, 9),
    version=st.sampled_from([0, 1, 2]),
)
def test_simnet_metas_agree_with_sdk_and_with_get_events(
    seed: int, per_ledger: int, system_every: int, fee_events: bool, offset: int, version: int
) -> None:
    """Generated metas (v2 with tx meta v4: failed txs, fee charges and refunds, system events;
    v1 with tx meta v3 and a diagnostic event; v0 with tx meta v2): the walker equals
    stellar-sdk's decode, and equals what the simulated getEvents serves field by field (v0
    metas, from before Soroban, carry no events)."""
    config = SimNetConfig(
        seed=seed,
        first_ledger=500,
        prebuilt_ledgers=10,
        events_per_ledger=per_ledger,
        system_event_every=system_every,
        fee_events=fee_events and version == 2,
    )
    network = SimNetwork(config)
    sequence = 500 + offset
    meta = close_meta(network, sequence, version=version)
    ledger = ledger_events(meta)
    assert ledger == ledger_events_with_sdk(meta)
    served = network.record_events(sequence, sequence)
    assert [rpc_record(e) for e in ledger.events] == ([] if version == 0 else served)


_TOPIC = st.sampled_from(["AAAADwAAAANmZWUA", "AAAADwAAAAh0cmFuc2Zlcg==", "AAAAAwAAAAE="])
_CONTRACTS = [TESTNET_SAC, MAINNET_SAC]


@settings(max_examples=200, deadline=None)
@given(
    contract=st.sampled_from(_CONTRACTS),
    topics=st.lists(_TOPIC, min_size=0, max_size=4),
    chosen=st.lists(st.sampled_from(_CONTRACTS), max_size=2),
    filters=st.lists(
        st.lists(st.one_of(_TOPIC, st.just("*")), min_size=1, max_size=4).flatmap(
            lambda segments: st.sampled_from([segments, [*segments, "**"]])
        ),
        max_size=3,
    ),
)
def test_selector_matches_like_get_events_filters(
    contract: str, topics: list[str], chosen: list[str], filters: list[list[str]]
) -> None:
    """CONTRACT_IDS / EVENT_TOPICS select exactly what the simulated getEvents' filters (the
    stellar-rpc semantics) select for the same contracts and topic filters."""
    selector = EventSelector.of(chosen, filters)
    event = RawEvent("x", "contract", 1, "", contract, "", 1, 0, True, tuple(topics), "")
    reference = simnet_filters.EventFilter(
        frozenset(), tuple(chosen), tuple(simnet_filters.TopicFilter(tuple(f)) for f in filters)
    )
    assert selector.selects(event) == reference.matches("contract", contract, tuple(topics))


def test_lake_events_decode_to_what_the_service_stores_from_get_events() -> None:
    """Every event of ten simulated ledgers, decoded from the lake meta, equals the Event the
    service builds from the same ledger's getEvents answer; with CONTRACT_IDS and EVENT_TOPICS
    set, the selection equals what getEvents' filters (built as the worker builds them) serve."""
    network = SimNetwork(
        SimNetConfig(seed=9, first_ledger=700, prebuilt_ledgers=10, system_event_every=2)
    )
    settings = Settings.from_env(
        contract_ids=network.token_contract_id, event_topics="transfer,*,*,*"
    )
    (filter_list,) = build_filter_sets(settings.contract_ids, settings.event_topics)
    filters = simnet_filters.decode_filters(filter_list)
    selector = EventSelector.for_settings(settings)
    selected_total = 0
    for sequence in range(700, 710):
        ledger = ledger_events(close_meta(network, sequence))
        served = network.record_events(sequence, sequence)
        assert ledger.decoded() == [decode_event(parse_event(r)) for r in served]
        wanted = [
            decode_event(parse_event(r))
            for r in served
            if simnet_filters.matches_any(filters, r["type"], r["contractId"], tuple(r["topic"]))
        ]
        assert ledger.decoded(selector) == wanted
        selected_total += len(wanted)
    assert selected_total > 0
