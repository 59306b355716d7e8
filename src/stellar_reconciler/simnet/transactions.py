"""Transactions of the simulated network, and the XDR getTransaction (simnet/methods.py) answers.

Every transaction hash that appears in a ledger's events is a transaction of that ledger; its
fee event says whether it failed (a failed transaction pays its fee and emits nothing else).
A test can also declare a hash failed on chain (`fail`) or unknown to the node (`forget`).
Answers carry real XDR built with stellar-sdk: a TransactionEnvelope invoking the token
contract, a TransactionResult (txSUCCESS, or txFAILED with the operation trapped) and a
TransactionMeta v4. The simulated hashes are derived from the seed, not from the envelope,
so sha256 of the envelope does not give the hash (as it would on a real network).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

from stellar_sdk import xdr

from stellar_reconciler.simnet.events import LedgerEvents


@dataclass(frozen=True, slots=True)
class TxRecord:
    ledger: int
    order: int  # 1-based position among the ledger's transactions
    failed: bool


class TransactionBook:
    """Which ledger holds each transaction, and what tests declared about hashes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, TxRecord] = {}
        self._failed: dict[str, int | None] = {}
        self._forgotten: set[str] = set()

    def add_ledger(self, events: LedgerEvents | None) -> None:
        """Index the transactions whose events `events` holds (called as a ledger closes)."""
        if events is None:
            return
        order: dict[str, int] = {}
        failed: set[str] = set()
        for i, tx_hash in enumerate(events.tx_hashes):
            order.setdefault(tx_hash, len(order) + 1)
            if not events.successful[i]:
                failed.add(tx_hash)
        with self._lock:
            for tx_hash, position in order.items():
                self._known[tx_hash] = TxRecord(events.sequence, position, tx_hash in failed)

    def fail(self, tx_hash: str, ledger: int | None = None) -> None:
        """Serve `tx_hash` as FAILED, in its own ledger or `ledger` (default: the latest)."""
        with self._lock:
            self._failed[tx_hash.lower()] = ledger
            self._forgotten.discard(tx_hash.lower())

    def forget(self, tx_hash: str) -> None:
        """Serve `tx_hash` as NOT_FOUND, whatever the ledgers hold."""
        with self._lock:
            self._forgotten.add(tx_hash.lower())
            self._failed.pop(tx_hash.lower(), None)

    def lookup(self, tx_hash: str, latest: int) -> TxRecord | None:
        with self._lock:
            if tx_hash in self._forgotten:
                return None
            known = self._known.get(tx_hash)
            if tx_hash in self._failed:
                ledger = self._failed[tx_hash] or (known.ledger if known else latest)
                return TxRecord(ledger, known.order if known else 1, True)
            return known

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {"failed": sorted(self._failed), "forgotten": sorted(self._forgotten)}


def result_xdr(tx_hash: str, fee: int, *, failed: bool) -> bytes:
    """A TransactionResult of one InvokeHostFunction: success, or txFAILED with it trapped."""
    if failed:
        invoked = xdr.InvokeHostFunctionResult(
            xdr.InvokeHostFunctionResultCode.INVOKE_HOST_FUNCTION_TRAPPED
        )
        code = xdr.TransactionResultCode.txFAILED
    else:
        digest = xdr.Hash(hashlib.sha256(bytes.fromhex(tx_hash)).digest())
        invoked = xdr.InvokeHostFunctionResult(
            xdr.InvokeHostFunctionResultCode.INVOKE_HOST_FUNCTION_SUCCESS, digest
        )
        code = xdr.TransactionResultCode.txSUCCESS
    operation = xdr.OperationResult(
        xdr.OperationResultCode.opINNER,
        tr=xdr.OperationResultTr(
            xdr.OperationType.INVOKE_HOST_FUNCTION, invoke_host_function_result=invoked
        ),
    )
    result = xdr.TransactionResult(
        xdr.Int64(fee),
        xdr.TransactionResultResult(code, results=[operation]),
        xdr.TransactionResultExt(0),
    )
    return bytes(result.to_xdr_bytes())


def meta_xdr() -> bytes:
    empty = xdr.LedgerEntryChanges([])
    meta = xdr.TransactionMeta(
        4, v4=xdr.TransactionMetaV4(xdr.ExtensionPoint(0), empty, [], empty, None, [], [])
    )
    return bytes(meta.to_xdr_bytes())
