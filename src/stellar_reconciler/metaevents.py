"""Contract events read out of ledger metadata by walking its bytes (the fast path).

The rules, and what the events are collected into, are meta_ledger's. The walker builds
nothing but the events (see xdrskip); stellar-sdk's full decode (metasdk) is the reference the
tests hold it to, and the fallback when the walker meets something it does not expect.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import struct

from stellar_sdk import StrKey

from stellar_reconciler.errors import MetaDecodeError, XdrSkipError
from stellar_reconciler.meta_ledger import (
    AFTER_ALL_TXS,
    AFTER_TX,
    BEFORE_ALL_TXS,
    OP_MASK,
    SUCCESS_CODES,
    TX_MASK,
    LedgerEvents,
    MetaLedger,
)
from stellar_reconciler.metasdk import (
    batch_ledgers_with_sdk,
    ledger_events_with_sdk,
    transaction_events_with_sdk,
)
from stellar_reconciler.models import LedgerHeader, RawEvent, iso_from_unix
from stellar_reconciler.xdrskip import Skipper, skipper

_uint = struct.Struct(">I").unpack_from
_int = struct.Struct(">i").unpack_from
_uint64 = struct.Struct(">Q").unpack_from


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


class EventSink(LedgerEvents):
    """Collects one ledger's events from the bytes of its transactions' metas."""

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
        self.add((tx, op, index), kind, contract_id, tx_hash, ok, tuple(topics), value)
        return end


def _contract_strkey(raw: bytes) -> str:
    return StrKey.encode_contract(raw)
