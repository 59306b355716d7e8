"""Ledger metadata through stellar-sdk's full decode: the reference for metaevents' walker.

It builds every XDR object and is many times slower; the tests hold the walker equal to it,
and the walker falls back to it when bytes do not follow the layout it expects. The event
rules are meta_ledger's (see its docstring); only the reading differs.
"""

from __future__ import annotations

import hashlib

from stellar_sdk import StrKey, xdr

from stellar_reconciler.errors import MetaDecodeError
from stellar_reconciler.meta_ledger import (
    AFTER_TX,
    BEFORE_ALL_TXS,
    OP_MASK,
    SUCCESS_CODES,
    TX_MASK,
    LedgerEvents,
    MetaLedger,
)
from stellar_reconciler.models import LedgerHeader, RawEvent, iso_from_unix


def batch_ledgers_with_sdk(data: bytes, cause: Exception) -> list[MetaLedger]:
    try:
        batch = xdr.LedgerCloseMetaBatch.from_xdr_bytes(data)
    except (ValueError, IndexError, EOFError, KeyError) as exc:
        raise MetaDecodeError(f"not a LedgerCloseMetaBatch: {cause}") from exc
    return [ledger_events_with_sdk(m.to_xdr_bytes()) for m in batch.ledger_close_metas]


def ledger_events_with_sdk(meta: bytes, cause: Exception | None = None) -> MetaLedger:
    """`ledger_events` through stellar-sdk's full decode: the reference, and the fallback."""
    try:
        close_meta = xdr.LedgerCloseMeta.from_xdr_bytes(meta)
    except (ValueError, IndexError, EOFError, KeyError) as exc:
        raise MetaDecodeError(f"not a LedgerCloseMeta: {cause or exc}") from exc
    body: xdr.LedgerCloseMetaV0 | xdr.LedgerCloseMetaV1 | xdr.LedgerCloseMetaV2 | None
    body = close_meta.v0 or close_meta.v1 or close_meta.v2
    assert body is not None
    entry = body.ledger_header
    header_bytes = entry.header.to_xdr_bytes()
    digest = hashlib.sha256(header_bytes).hexdigest()
    if digest != entry.hash.hash.hex():
        raise MetaDecodeError(
            f"ledger header hashes to {digest}, its history entry says {entry.hash.hash.hex()}"
        )
    h = entry.header
    header = LedgerHeader(
        sequence=h.ledger_seq.uint32,
        hash=digest,
        previous_hash=h.previous_ledger_hash.hash.hex(),
        close_time=h.scp_value.close_time.time_point.uint64,
        protocol_version=h.ledger_version.uint32,
        meta_size=len(meta),
    )
    sink = _SdkSink(header.sequence, iso_from_unix(header.close_time))
    processed: list[xdr.TransactionResultMeta | xdr.TransactionResultMetaV1] = list(
        body.tx_processing
    )
    for tx, processing in enumerate(processed, start=1):
        pair = processing.result
        code = pair.result.result.code.value
        sink.transaction(
            processing.tx_apply_processing,
            tx,
            pair.transaction_hash.hash.hex(),
            code in SUCCESS_CODES,
        )
    return MetaLedger(header, tuple(sink.sorted()))


def transaction_events_with_sdk(
    meta: bytes, ledger: int, tx_index: int, tx_hash: str, successful: bool, closed_at: str
) -> list[RawEvent]:
    """`transaction_events` through stellar-sdk's full decode (the reference)."""
    try:
        decoded = xdr.TransactionMeta.from_xdr_bytes(meta)
    except (ValueError, IndexError, EOFError, KeyError) as exc:
        raise MetaDecodeError(f"not a TransactionMeta: {exc}") from exc
    sink = _SdkSink(ledger, closed_at)
    sink.transaction(decoded, tx_index, tx_hash, successful)
    return sink.sorted()


class _SdkSink(LedgerEvents):
    def transaction(self, meta: xdr.TransactionMeta, tx: int, tx_hash: str, ok: bool) -> None:
        if meta.v == 3 and meta.v3 is not None and meta.v3.soroban_meta is not None:
            for index, event in enumerate(meta.v3.soroban_meta.events):
                self._add(event, tx, 0, index, tx_hash, ok)
        if meta.v == 4 and meta.v4 is not None:
            for op, operation in enumerate(meta.v4.operations):
                for index, event in enumerate(operation.events):
                    self._add(event, tx, op, index, tx_hash, ok)
            after_tx = 0
            for tx_event in meta.v4.events:
                stage = tx_event.stage.value
                if stage == BEFORE_ALL_TXS:
                    self._add(tx_event.event, 0, 0, self.before_all, tx_hash, ok)
                    self.before_all += 1
                elif stage == AFTER_TX:
                    self._add(tx_event.event, tx, OP_MASK, after_tx, tx_hash, ok)
                    after_tx += 1
                else:
                    self._add(tx_event.event, TX_MASK, 0, self.after_all, tx_hash, ok)
                    self.after_all += 1

    def _add(
        self, event: xdr.ContractEvent, tx: int, op: int, index: int, tx_hash: str, ok: bool
    ) -> None:
        body = event.body.v0
        assert body is not None
        contract = event.contract_id
        self.add(
            (tx, op, index),
            event.type.value,
            StrKey.encode_contract(contract.to_xdr_bytes()) if contract else "",
            tx_hash,
            ok,
            tuple(t.to_xdr() for t in body.topics),
            body.data.to_xdr(),
        )
