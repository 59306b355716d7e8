"""Contract events read out of ledger metadata, exactly as Stellar RPC's getEvents serves them.

The rules are stellar-rpc's own (its event ingestion from `LedgerCloseMeta`):
- transactions in apply order (the meta's tx processing order), numbered from 1;
- TransactionMeta v3: the Soroban meta's contract events, as operation 0 (diagnostic events
  are not events of getEvents); v0-v2 carry no events;
- TransactionMeta v4: each operation's events under its own index, and the transaction-level
  events by stage: before all transactions at (tx 0, op 0) with one counter for the whole
  ledger, after each transaction at (tx, op 4095), after all transactions at (tx 1048575,
  op 0) with one counter for the whole ledger;
- an event index counts within its (tx, op) slot; failed transactions are not skipped (their
  fee events stay), and `inSuccessfulContractCall` is whether the transaction succeeded;
- the transaction hash is the one in the transaction's result pair.

The fast path walks the bytes and builds nothing but the events (see xdrskip); the stellar-sdk
path (metasdk) decodes everything and is the reference the tests hold the fast path to, and
the fallback when the fast path meets something it does not expect.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from stellar_sdk import StrKey

from stellar_reconciler.config import Settings
from stellar_reconciler.decode import decode_event
from stellar_reconciler.errors import MetaDecodeError, XdrSkipError
from stellar_reconciler.models import Event, LedgerHeader, RawEvent, iso_from_unix
from stellar_reconciler.xdrskip import Skipper, skipper

TX_MASK = (1 << 20) - 1
OP_MASK = (1 << 12) - 1
EVENT_TYPES = {0: "system", 1: "contract"}
DIAGNOSTIC = 2
BEFORE_ALL_TXS, AFTER_TX, AFTER_ALL_TXS = 0, 1, 2
# txSUCCESS and txFEE_BUMP_INNER_SUCCESS; every other result code is a failed transaction.
SUCCESS_CODES = (0, 1)

_uint = struct.Struct(">I").unpack_from
_int = struct.Struct(">i").unpack_from
_uint64 = struct.Struct(">Q").unpack_from


@dataclass(frozen=True, slots=True)
class MetaLedger:
    """One ledger out of its metadata: the header, hash-checked, and its events in id order."""

    header: LedgerHeader
    events: tuple[RawEvent, ...]

    def decoded(self, selector: EventSelector | None = None) -> list[Event]:
        """The selected events decoded as the service stores them (topics and value as JSON)."""
        chosen = self.events if selector is None else filter(selector.selects, self.events)
        return [decode_event(event) for event in chosen]


@dataclass(frozen=True, slots=True)
class EventSelector:
    """CONTRACT_IDS and EVENT_TOPICS applied the way getEvents applies them.

    Topic segments are base64 ScVals or the wildcards `*` (one topic) and, last, `**` (any
    number); without `**` an event has exactly as many topics as the filter has segments.
    No contracts and no topic filters select every event.
    """

    contract_ids: frozenset[str] = frozenset()
    topic_filters: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def of(cls, contract_ids: Iterable[str], topics: Iterable[Sequence[str]]) -> EventSelector:
        return cls(frozenset(contract_ids), tuple(tuple(t) for t in topics))

    @classmethod
    def for_settings(cls, settings: Settings) -> EventSelector:
        """What CONTRACT_IDS and EVENT_TOPICS select (segments already as getEvents takes them)."""
        return cls.of(settings.contract_ids, settings.event_topics)

    def selects(self, event: RawEvent) -> bool:
        if self.contract_ids and event.contract_id not in self.contract_ids:
            return False
        if not self.topic_filters:
            return True
        return any(_topics_match(f, event.topics_xdr) for f in self.topic_filters)


def _topics_match(segments: tuple[str, ...], topics: tuple[str, ...]) -> bool:
    flexible = bool(segments) and segments[-1] == "**"
    fixed = segments[:-1] if flexible else segments
    if len(topics) < len(fixed) or (not flexible and len(topics) != len(fixed)):
        return False
    return all(s in ("*", t) for s, t in zip(fixed, topics, strict=False))


def rpc_record(event: RawEvent) -> dict[str, Any]:
    """The event as getEvents serves it (keys and JSON types of its base64 XDR format)."""
    return {
        "type": event.type,
        "ledger": event.ledger,
        "ledgerClosedAt": event.ledger_closed_at,
        "contractId": event.contract_id,
        "id": event.id,
        "operationIndex": event.operation_index,
        "transactionIndex": event.transaction_index,
        "txHash": event.tx_hash,
        "inSuccessfulContractCall": event.in_successful_contract_call,
        "topic": list(event.topics_xdr),
        "value": event.value_xdr,
    }


def event_id(ledger: int, tx: int, op: int, index: int) -> str:
    return f"{(ledger << 32) | (tx << 12) | op:019d}-{index:010d}"


# --- the fast path ---------------------------------------------------------------------------

_skip_header = skipper("LedgerHeader")
_skip_stellar_value = skipper("StellarValue")
_skip_tx_set = skipper("TransactionSet")
_skip_generalized_tx_set = skipper("GeneralizedTransactionSet")
_skip_extension = skipper("ExtensionPoint")
_skip_result = skipper("TransactionResult")
_skip_changes = skipper("LedgerEntryChanges")
_skip_meta = skipper("TransactionMeta")
_skip_operation_meta = skipper("OperationMeta")
_skip_soroban_ext = skipper("SorobanTransactionMetaExt")
_skip_soroban_meta_v2 = skipper("SorobanTransactionMetaV2")
_skip_scval = skipper("SCVal")
_skip_diagnostic = skipper("DiagnosticEvent")
_skip_upgrade = skipper("UpgradeEntryMeta")
_skip_scp = skipper("SCPHistoryEntry")
_skip_ledger_key = skipper("LedgerKey")
_skip_ledger_entry = skipper("LedgerEntry")
_skip_close_meta_ext = skipper("LedgerCloseMetaExt")


def batch_ledgers(data: bytes) -> list[MetaLedger]:
    """Every ledger of a `LedgerCloseMetaBatch` (what one SEP-54 object holds, decompressed)."""
    try:
        start, end, count = struct.unpack_from(">III", data, 0)
        if count != end - start + 1 or count > len(data):
            raise MetaDecodeError(
                f"batch says ledgers {start}-{end} but holds {count} metas",
            )
        pos = 12
        ledgers = []
        for _ in range(count):
            ledger, pos = _read_close_meta(data, pos)
            ledgers.append(ledger)
    except (XdrSkipError, struct.error, RecursionError) as exc:
        # metasdk imports this module: imported here, where the fallback needs it.
        from stellar_reconciler.metasdk import batch_ledgers_with_sdk

        return batch_ledgers_with_sdk(data, exc)
    if pos != len(data):
        raise MetaDecodeError(f"{len(data) - pos} bytes after the last ledger of the batch")
    sequences = [ledger.header.sequence for ledger in ledgers]
    if sequences != list(range(start, end + 1)):
        raise MetaDecodeError(f"batch {start}-{end} holds ledgers {sequences[:3]}...")
    return ledgers


def ledger_events(meta: bytes) -> MetaLedger:
    """The ledger described by one `LedgerCloseMeta` XDR (v0, v1 or v2)."""
    try:
        ledger, end = _read_close_meta(meta, 0)
    except (XdrSkipError, struct.error, RecursionError) as exc:
        from stellar_reconciler.metasdk import ledger_events_with_sdk

        return ledger_events_with_sdk(meta, exc)
    if end != len(meta):
        raise MetaDecodeError(f"{len(meta) - end} bytes after the LedgerCloseMeta")
    return ledger


def transaction_events(
    meta: bytes, ledger: int, tx_index: int, tx_hash: str, successful: bool, closed_at: str
) -> list[RawEvent]:
    """Operation and transaction-level events of one TransactionMeta (as getTransactions
    serves `resultMetaXdr`). Ledger-wide counters start at 0, as for a ledger's only tx."""
    sink = EventSink(ledger, closed_at)
    try:
        end = sink.transaction_meta(meta, 0, tx_index, tx_hash, successful)
    except (XdrSkipError, struct.error, RecursionError):
        from stellar_reconciler.metasdk import transaction_events_with_sdk

        return transaction_events_with_sdk(meta, ledger, tx_index, tx_hash, successful, closed_at)
    if end != len(meta):
        raise MetaDecodeError(f"{len(meta) - end} bytes after the TransactionMeta")
    return sink.sorted()


def _read_close_meta(data: bytes, pos: int) -> tuple[MetaLedger, int]:
    meta_start = pos
    (version,) = _int(data, pos)
    pos += 4
    if version not in (0, 1, 2):
        raise MetaDecodeError(f"LedgerCloseMeta v{version} is not known (v0, v1, v2 are)")
    if version:
        pos = _skip_close_meta_ext(data, pos)
    header, pos = _read_history_entry(data, pos)
    sink = EventSink(header.sequence, iso_from_unix(header.close_time))
    pos = (_skip_tx_set if version == 0 else _skip_generalized_tx_set)(data, pos)
    (count,) = _uint(data, pos)
    pos += 4
    for tx_index in range(1, count + 1):
        if version == 2:
            pos = _skip_extension(data, pos)
        tx_hash = data[pos : pos + 32].hex()
        (code,) = _int(data, pos + 40)
        pos = _skip_result(data, pos + 32)
        pos = _skip_changes(data, pos)  # fee processing
        pos = sink.transaction_meta(data, pos, tx_index, tx_hash, code in SUCCESS_CODES)
        if version == 2:
            pos = _skip_changes(data, pos)  # post-apply fee processing
    pos = _skip_array(data, pos, _skip_upgrade)
    pos = _skip_array(data, pos, _skip_scp)
    if version:
        pos += 8  # total byte size of live Soroban state
        pos = _skip_array(data, pos, _skip_ledger_key)
        if version == 1:
            pos = _skip_array(data, pos, _skip_ledger_entry)
    header = dataclasses.replace(header, meta_size=pos - meta_start)
    return MetaLedger(header, tuple(sink.sorted())), pos


def _read_history_entry(data: bytes, pos: int) -> tuple[LedgerHeader, int]:
    claimed = data[pos : pos + 32]
    start = pos + 32
    end = _skip_header(data, start)
    header_bytes = data[start:end]
    digest = hashlib.sha256(header_bytes).digest()
    if digest != claimed:
        raise MetaDecodeError(
            f"ledger header hashes to {digest.hex()}, its history entry says {claimed.hex()}"
        )
    (protocol,) = _uint(data, start)
    (close_time,) = _uint64(data, start + 68)
    (sequence,) = _uint(data, _skip_stellar_value(data, start + 36) + 64)
    header = LedgerHeader(
        sequence=sequence,
        hash=digest.hex(),
        previous_hash=data[start + 4 : start + 36].hex(),
        close_time=close_time,
        protocol_version=protocol,
    )
    (ext,) = _int(data, end)
    if ext != 0:
        raise XdrSkipError("LedgerHeaderHistoryEntry ext is not v0")
    return header, end + 4


def _skip_array(data: bytes, pos: int, skip: Skipper) -> int:
    (count,) = _uint(data, pos)
    pos += 4
    for _ in range(count):
        pos = skip(data, pos)
    return pos


class EventSink:
    """Collects one ledger's events with stellar-rpc's ids."""

    def __init__(self, ledger: int, closed_at: str) -> None:
        self.ledger = ledger
        self.closed_at = closed_at
        self.events: list[RawEvent] = []
        self.before_all = 0
        self.after_all = 0

    def sorted(self) -> list[RawEvent]:
        self.events.sort(key=lambda e: e.id)
        return self.events

    def transaction_meta(self, data: bytes, pos: int, tx: int, tx_hash: str, ok: bool) -> int:
        (version,) = _int(data, pos)
        if version == 3:
            return self._meta_v3(data, pos + 4, tx, tx_hash, ok)
        if version == 4:
            return self._meta_v4(data, pos + 4, tx, tx_hash, ok)
        return _skip_meta(data, pos)

    def _meta_v3(self, data: bytes, pos: int, tx: int, tx_hash: str, ok: bool) -> int:
        pos = _skip_extension(data, pos)
        pos = _skip_changes(data, pos)
        pos = _skip_array(data, pos, _skip_operation_meta)
        pos = _skip_changes(data, pos)
        (present,) = _uint(data, pos)
        pos += 4
        if present:
            pos = _skip_soroban_ext(data, pos)
            (count,) = _uint(data, pos)
            pos += 4
            for index in range(count):
                pos = self._event(data, pos, tx, 0, index, tx_hash, ok)
            pos = _skip_scval(data, pos)  # return value
            pos = _skip_array(data, pos, _skip_diagnostic)
        return pos

    def _meta_v4(self, data: bytes, pos: int, tx: int, tx_hash: str, ok: bool) -> int:
        pos = _skip_extension(data, pos)
        pos = _skip_changes(data, pos)
        (operations,) = _uint(data, pos)
        pos += 4
        for op in range(operations):
            pos = _skip_extension(data, pos)
            pos = _skip_changes(data, pos)
            (count,) = _uint(data, pos)
            pos += 4
            for index in range(count):
                pos = self._event(data, pos, tx, op, index, tx_hash, ok)
        pos = _skip_changes(data, pos)
        (present,) = _uint(data, pos)
        pos += 4
        if present:
            pos = _skip_soroban_meta_v2(data, pos)
        (count,) = _uint(data, pos)
        pos += 4
        after_tx = 0
        for _ in range(count):
            (stage,) = _int(data, pos)
            pos += 4
            if stage == BEFORE_ALL_TXS:
                pos = self._event(data, pos, 0, 0, self.before_all, tx_hash, ok)
                self.before_all += 1
            elif stage == AFTER_TX:
                pos = self._event(data, pos, tx, OP_MASK, after_tx, tx_hash, ok)
                after_tx += 1
            elif stage == AFTER_ALL_TXS:
                pos = self._event(data, pos, TX_MASK, 0, self.after_all, tx_hash, ok)
                self.after_all += 1
            else:
                raise MetaDecodeError(f"transaction event stage {stage} is not known")
        return _skip_array(data, pos, _skip_diagnostic)

    def _event(
        self, data: bytes, pos: int, tx: int, op: int, index: int, tx_hash: str, ok: bool
    ) -> int:
        pos = _skip_extension(data, pos)
        (present,) = _uint(data, pos)
        pos += 4
        contract_id = ""
        if present:
            contract_id = _contract_strkey(data[pos : pos + 32])
            pos += 32
        kind, body = struct.unpack_from(">iI", data, pos)
        pos += 8
        if body != 0:
            raise XdrSkipError("contract event body is not v0")
        (count,) = _uint(data, pos)
        pos += 4
        topics = []
        for _ in range(count):
            end = _skip_scval(data, pos)
            topics.append(base64.b64encode(data[pos:end]).decode("ascii"))
            pos = end
        end = _skip_scval(data, pos)
        if end > len(data):
            raise XdrSkipError("event value runs past the end of the meta")
        value = base64.b64encode(data[pos:end]).decode("ascii")
        if kind != DIAGNOSTIC:
            self.events.append(
                RawEvent(
                    event_id(self.ledger, tx, op, index),
                    EVENT_TYPES.get(kind, "contract"),
                    self.ledger,
                    self.closed_at,
                    contract_id,
                    tx_hash,
                    tx,
                    op,
                    ok,
                    tuple(topics),
                    value,
                )
            )
        return end


def _contract_strkey(raw: bytes) -> str:
    return StrKey.encode_contract(raw)
