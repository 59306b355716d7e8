"""The simulated network's history as a SEP-54 data lake.

Each ledger becomes a `LedgerCloseMeta` v2 whose transactions carry, as TransactionMeta v4,
exactly the events getEvents serves for that ledger: fee charges as transaction-level events
before all transactions, each transaction's operation events under its operation, and fee
refunds after all transactions. Headers are the chain's own, so hashes check and chain.
Objects are written through obstore, so the same code fills a directory or an S3 bucket.

The getLedgers metadata of the simulated network stays event-free (it is sized for other
tests); only the lake copy carries the events.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping

import obstore
import zstandard
from obstore.store import ObjectStore
from stellar_sdk import StrKey

from stellar_reconciler.lake import CONFIG_KEY, LakeLayout
from stellar_reconciler.simnet import codec
from stellar_reconciler.simnet.cursor import TX_MASK
from stellar_reconciler.simnet.events import SYSTEM, LedgerEvents
from stellar_reconciler.simnet.network import SimNetwork

_BEFORE_ALL_TXS, _AFTER_ALL_TXS = 0, 2
_TX_FAILED = -1
_DIAGNOSTIC = 2
_SCV_VOID = 1
_u32 = struct.Struct(">I").pack
_i32 = struct.Struct(">i").pack


def close_meta(
    network: SimNetwork, sequence: int, altered: bool = False, version: int = 2
) -> bytes:
    """LedgerCloseMeta XDR of `sequence` with its events; `altered` changes one event's value
    (a lake copy that differs from what the RPC serves).

    `version` 2 carries TransactionMeta v4 (protocol 23 on); 1 carries v3 (protocols 20-22:
    Soroban events only, with a diagnostic event beside them that getEvents never serves), and
    needs a network without fee events, which v3 cannot hold; 0 carries v2 (before Soroban:
    no events at all).
    """
    header = network.header_xdr(sequence)
    entry = hashlib.sha256(header).digest() + header + _u32(0)
    previous = header[4:36]
    events = network.ledger_events(sequence)
    if version == 1 and events is not None and any(tx in (0, TX_MASK) for tx in events.txs):
        raise ValueError("TransactionMeta v3 holds no transaction-level (fee) events")
    transactions = _transactions(events, altered, version) if events is not None else []
    if version == 0:
        head = [_i32(0), entry, previous + _u32(0)]  # TransactionSet with no envelopes
    else:
        # LedgerCloseMetaExt v0, then a GeneralizedTransactionSet v1 with no phases.
        head = [_i32(version), _i32(0), entry, _i32(1) + previous + _u32(0)]
    tail = [_u32(0) + _u32(0)]  # upgrades, SCP info
    if version:
        tail.append(struct.pack(">Q", 0) + _u32(0))  # live Soroban state size, evicted keys
    if version == 1:
        tail.append(_u32(0))  # unused
    return b"".join([*head, _u32(len(transactions)), *transactions, *tail])


def _transactions(events: LedgerEvents, altered: bool, version: int) -> list[bytes]:
    numbers: dict[str, int] = {}
    fee_ordinal = 0
    for i in range(len(events)):
        if events.txs[i] == 0:
            fee_ordinal += 1
            numbers.setdefault(events.tx_hashes[i], fee_ordinal)
        elif events.txs[i] != TX_MASK:
            numbers.setdefault(events.tx_hashes[i], events.txs[i])
    count = max(numbers.values(), default=0)
    hashes = {number: tx_hash for tx_hash, number in numbers.items()}
    op_events: dict[int, list[bytes]] = {}
    tx_events: dict[int, list[bytes]] = {}
    successful: dict[int, bool] = {}
    for i in range(len(events)):
        tx = numbers[events.tx_hashes[i]]
        value = events.values[i]
        if altered and i == 0:
            value = codec.b64(codec.u32(0xDEAD))
        event = _contract_event(events.types[i], events.contract_ids[i], events.topics[i], value)
        if events.txs[i] == 0:
            tx_events.setdefault(tx, []).append(_i32(_BEFORE_ALL_TXS) + event)
            successful[tx] = events.successful[i]
        elif events.txs[i] == TX_MASK:
            tx_events.setdefault(tx, []).append(_i32(_AFTER_ALL_TXS) + event)
        else:
            op_events.setdefault(tx, []).append(event)
    return [
        _result_meta(
            bytes.fromhex(hashes[tx]),
            successful.get(tx, True),
            op_events.get(tx, []),
            tx_events.get(tx, []),
            version,
        )
        for tx in range(1, count + 1)
    ]


def _contract_event(kind: str, contract_id: str, topics: Iterable[str], value: str) -> bytes:
    topic_bytes = [codec.unb64(t) for t in topics]
    return b"".join(
        (
            _i32(0),  # ExtensionPoint v0
            _u32(1) + StrKey.decode_contract(contract_id),
            _i32(0 if kind == SYSTEM else 1),
            _i32(0),  # body v0
            _u32(len(topic_bytes)),
            *topic_bytes,
            codec.unb64(value),
        )
    )


def _result_meta(
    tx_hash: bytes, ok: bool, ops: list[bytes], tx_events: list[bytes], version: int
) -> bytes:
    """TransactionResultMeta (v1 for LedgerCloseMeta v2) of one transaction."""
    result = struct.pack(">q", 100) + _i32(0 if ok else _TX_FAILED) + _u32(0) + _i32(0)
    if version == 2:
        meta = _meta_v4(ops, tx_events)
        return b"".join((_i32(0), tx_hash, result, _u32(0), meta, _u32(0)))
    # OperationMeta of one operation with no ledger changes.
    operations = _u32(1) + _u32(0)
    # v1 carries TransactionMeta v3; v0 carries v2 (changes before, operations, changes after).
    v2 = _i32(2) + _u32(0) + operations + _u32(0)
    meta = _meta_v3(operations, ops) if version == 1 else v2
    return b"".join((tx_hash, result, _u32(0), meta))


def _meta_v4(ops: list[bytes], tx_events: list[bytes]) -> bytes:
    operations = _u32(1) + _i32(0) + _u32(0) + _u32(len(ops)) + b"".join(ops) if ops else _u32(0)
    return b"".join(
        (
            _i32(4),
            _i32(0),  # ext
            _u32(0),  # changes before
            operations,
            _u32(0),  # changes after
            _u32(0),  # no Soroban meta
            _u32(len(tx_events)),
            *tx_events,
            _u32(0),  # diagnostic events
        )
    )


def _meta_v3(operations: bytes, ops: list[bytes]) -> bytes:
    # A diagnostic copy of the first event rides along, as nodes with diagnostics enabled
    # write them: it must never come out as an event.
    # The type sits after the ext (4), the contract id's flag (4) and the id itself (32).
    diagnostics = [_u32(1) + ops[0][:40] + _i32(_DIAGNOSTIC) + ops[0][44:]] if ops else []
    soroban = b"".join(
        (
            _i32(0),  # SorobanTransactionMetaExt v0
            _u32(len(ops)),
            *ops,
            _i32(_SCV_VOID),  # return value
            _u32(len(diagnostics)),
            *diagnostics,
        )
    )
    return b"".join((_i32(3), _i32(0), _u32(0), operations, _u32(0), _u32(1), soroban))


def batch_object(metas: list[bytes], first: int, last: int) -> bytes:
    """A SEP-54 object: zstd of the LedgerCloseMetaBatch of ledgers first..last."""
    batch = _u32(first) + _u32(last) + _u32(len(metas)) + b"".join(metas)
    return zstandard.ZstdCompressor(level=3).compress(batch)


def publish(
    network: SimNetwork,
    store: ObjectStore,
    first: int,
    last: int,
    layout: LakeLayout | None = None,
    altered: Iterable[int] = (),
    passphrase: str | None = None,
    version: int = 2,
) -> list[str]:
    """Write ledgers first..last (whole batches) and the configuration object; returns the
    batch keys written. `passphrase` overrides the network's (a lake of another network);
    `version` is the LedgerCloseMeta version (see close_meta)."""
    layout = layout or LakeLayout(network.passphrase, 1, 64)
    if passphrase is not None:
        layout = LakeLayout(passphrase, layout.ledgers_per_batch, layout.batches_per_partition)
    obstore.put(store, CONFIG_KEY, layout.to_json())
    changed = set(altered)
    keys = []
    start = layout.batch_range(first)[0]
    if start < network.first_ledger or layout.batch_range(last)[1] > network.latest_ledger:
        raise ValueError(
            f"ledgers {first}-{last} do not fill whole batches of {layout.ledgers_per_batch} "
            f"inside {network.first_ledger}..{network.latest_ledger}"
        )
    while start <= last:
        end = start + layout.ledgers_per_batch - 1
        sequences = range(start, end + 1)
        metas = [close_meta(network, s, s in changed, version) for s in sequences]
        key = layout.batch_key(start)
        obstore.put(store, key, batch_object(metas, start, end))
        keys.append(key)
        start = end + 1
    return keys


DAMAGES = ("missing", "truncated", "corrupt", "empty")


def damage(store: ObjectStore, key: str, how: str) -> None:
    """Break one lake object: `missing` deletes it, `truncated` keeps its first half,
    `corrupt` flips 20 bytes after the zstd frame header, `empty` leaves zero bytes."""
    if how not in DAMAGES:
        raise ValueError(f"damage {how!r} is not one of {', '.join(DAMAGES)}")
    if how == "missing":
        obstore.delete(store, key)
        return
    data = bytes(obstore.get(store, key).bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "corrupt":
        data = data[:20] + bytes(b ^ 0x5A for b in data[20:40]) + data[40:]
    else:
        data = b""
    obstore.put(store, key, data)


def truth(network: SimNetwork, first: int, last: int) -> Mapping[str, dict[str, object]]:
    """The events getEvents would serve for first..last, by id (the comparison's reference)."""
    return {record["id"]: record for record in network.record_events(first, last)}
