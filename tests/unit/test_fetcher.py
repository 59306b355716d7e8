"""Batch assembly (a row per ledger, the hash chain checked through it) and batch sizing."""

from __future__ import annotations

import pytest
from stellar_sdk import xdr

from stellar_reconciler.decode import decode_history_entry
from stellar_reconciler.errors import ChainBreakError, RpcProtocolError
from stellar_reconciler.fetcher import BatchSizer, build_batch
from stellar_reconciler.models import LedgerHeader
from tests.factories import ledger_hash, make_event
from tests.fixtures import load


def headers(first: int, last: int, salt: str = "") -> list[LedgerHeader]:
    return [
        LedgerHeader(
            sequence=s,
            hash=ledger_hash(s, salt),
            previous_hash=ledger_hash(s - 1, salt),
            close_time=1_700_000_000 + 5 * s,
            protocol_version=23,
        )
        for s in range(first, last + 1)
    ]


def test_batch_counts_events_per_ledger() -> None:
    """Every ledger gets a row, with the number of its events, even when it has none."""
    batch = build_batch(
        10, headers(10, 13), [make_event(11, 0), make_event(11, 1), make_event(13)], ledger_hash(9)
    )
    assert [(r.sequence, r.event_count) for r in batch.ledgers] == [
        (10, 0),
        (11, 2),
        (12, 0),
        (13, 1),
    ]


def test_previous_hash_must_match_stored_ledger() -> None:
    """A first ledger whose previous hash differs from the stored one is a chain break."""
    with pytest.raises(ChainBreakError) as caught:
        build_batch(10, headers(10, 12), [], previous_hash="ab" * 32)
    assert caught.value.sequence == 10
    assert caught.value.expected == "ab" * 32 and caught.value.found == ledger_hash(9)


def test_chain_break_inside_a_batch_is_found() -> None:
    """A header in the middle that does not link to its predecessor is a chain break there."""
    hs = headers(10, 12)
    hs[2] = headers(12, 12, salt="fork")[0]
    with pytest.raises(ChainBreakError) as caught:
        build_batch(10, hs, [], previous_hash=None)
    assert caught.value.sequence == 12


def test_events_outside_the_batch_are_refused() -> None:
    """An event from a ledger the batch does not cover means the RPC answered wrongly."""
    with pytest.raises(RpcProtocolError):
        build_batch(10, headers(10, 11), [make_event(12)], None)


def test_chain_break_keeps_the_ledgers_before_it() -> None:
    """A break inside a batch hands back the ledgers (and events) before it, which do chain."""
    hs = headers(10, 14)
    hs[3] = headers(13, 13, salt="fork")[0]
    events = [make_event(11), make_event(13), make_event(14)]
    with pytest.raises(ChainBreakError) as caught:
        build_batch(10, hs, events, previous_hash=ledger_hash(9))
    prefix = caught.value.valid_prefix
    assert prefix is not None
    assert (prefix.first_ledger, prefix.last_ledger) == (10, 12)
    assert [e.ledger for e in prefix.events] == [11]


def test_fifty_mainnet_headers_pass_continuity_and_one_altered_fails_there() -> None:
    """The 50 recorded mainnet headers chain; altering one header breaks the chain exactly at
    the ledger after it (its previous hash no longer matches)."""
    records = load("mainnet_getLedgers_headers_63800060-63800109.json")["records"]
    decoded = [decode_history_entry(r["headerXdr"])[0] for r in records]
    batch = build_batch(63800060, decoded, [], previous_hash=None)
    assert batch.last_ledger == 63800109

    entry = xdr.LedgerHeaderHistoryEntry.from_xdr(records[20]["headerXdr"])
    entry.header.fee_pool = xdr.Int64(entry.header.fee_pool.int64 + 1)
    altered = decode_history_entry(entry.to_xdr())[0]
    assert altered.sequence == 63800080 and altered.hash != decoded[20].hash
    tampered = [*decoded[:20], altered, *decoded[21:]]
    with pytest.raises(ChainBreakError) as caught:
        build_batch(63800060, tampered, [], previous_hash=None)
    assert caught.value.sequence == 63800081
    assert caught.value.expected == altered.hash and caught.value.found == decoded[20].hash


def test_sizer_targets_events_per_batch_within_bounds() -> None:
    """Batches span about target/rate ledgers, between 1 and the configured maximum."""
    sizer = BatchSizer(max_ledgers=1000, target_events=10000)
    assert sizer.next_size() == 10
    sizer.observe(10, 0)
    assert sizer.next_size() == 1000
    dense = BatchSizer(max_ledgers=1000, target_events=10000)
    dense.observe(10, 10000)
    assert dense.next_size() == 10


def test_sizer_halves_after_failure_and_recovers() -> None:
    """A failed range halves the next batch; successes double it back to the maximum."""
    sizer = BatchSizer(max_ledgers=64, target_events=10000)
    sizer.observe(10, 0)
    sizer.shrink(64)
    assert sizer.next_size() == 32
    sizer.shrink(2)
    assert sizer.next_size() == 1
    for _ in range(7):
        sizer.observe(1, 0)
    assert sizer.next_size() == 64
