"""What `getTransaction` says about one transaction, checked, with its result code decoded.

An expected record pinned to a transaction hash asks this when no event settled it: a
transaction that failed on chain, or that the network never saw, explains a missing event
better than "missing". The answer is checked as closely as the spec allows (status, the hash
asked for, the ledger range, XDR that decodes, a result code that agrees with the status),
because a record's verdict is written from it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stellar_sdk import xdr

from stellar_reconciler.answers import int_field
from stellar_reconciler.errors import RpcProtocolError

METHOD = "getTransaction"
SUCCESS, FAILED, NOT_FOUND = "SUCCESS", "FAILED", "NOT_FOUND"
TX_STATUSES = (SUCCESS, FAILED, NOT_FOUND)
_SUCCESS_CODES = frozenset(
    {xdr.TransactionResultCode.txSUCCESS, xdr.TransactionResultCode.txFEE_BUMP_INNER_SUCCESS}
)
# A result code names at most this many failed operations (a transaction has up to 100).
_SHOWN_OPERATIONS = 5


@dataclass(frozen=True, slots=True)
class TransactionOutcome:
    """One getTransaction answer. `ledger`, `created_at` and `result_code` are set for
    SUCCESS and FAILED; `result_code` reads like "txFAILED: op 0 INVOKE_HOST_FUNCTION_TRAPPED"."""

    tx_hash: str
    status: str
    latest_ledger: int
    oldest_ledger: int
    ledger: int | None = None
    created_at: int | None = None
    application_order: int | None = None
    fee_bump: bool = False
    fee_charged: int | None = None
    result_code: str | None = None


def parse_transaction(result: Mapping[str, Any], asked: str) -> TransactionOutcome:
    """The outcome of transaction `asked` (hex) from a getTransaction `result` object;
    RpcProtocolError names the field when the answer breaks the spec."""
    status = result.get("status")
    if status not in TX_STATUSES:
        raise RpcProtocolError(
            METHOD, f"field 'status' is {status!r}, expected one of SUCCESS, FAILED or NOT_FOUND"
        )
    tx_hash = result.get("txHash", asked)
    # Servers before the spec required txHash leave it out; one that names another
    # transaction answered another question.
    if not isinstance(tx_hash, str) or tx_hash.lower() != asked.lower():
        raise RpcProtocolError(
            METHOD, f"field 'txHash' is {tx_hash!r}, but transaction {asked} was asked for"
        )
    latest = int_field(result, "latestLedger", METHOD)
    oldest = int_field(result, "oldestLedger", METHOD)
    if oldest > latest:
        raise RpcProtocolError(METHOD, f"oldestLedger {oldest} is after latestLedger {latest}")
    if status == NOT_FOUND:
        return TransactionOutcome(asked.lower(), status, latest, oldest)
    ledger = int_field(result, "ledger", METHOD)
    if not oldest <= ledger <= latest:
        raise RpcProtocolError(
            METHOD, f"field 'ledger' is {ledger}, outside the node's range {oldest}-{latest}"
        )
    outcome = _decode(result, "resultXdr", xdr.TransactionResult, required=True)
    for field_name, kind in (
        ("envelopeXdr", xdr.TransactionEnvelope),
        ("resultMetaXdr", xdr.TransactionMeta),
    ):
        _decode(result, field_name, kind, required=False)
    succeeded = outcome.result.code in _SUCCESS_CODES
    if succeeded != (status == SUCCESS):
        raise RpcProtocolError(
            METHOD, f"status {status} disagrees with the result code {result_code(outcome)}"
        )
    fee_bump = result.get("feeBump", False)
    if not isinstance(fee_bump, bool):
        raise RpcProtocolError(METHOD, f"field 'feeBump' is {fee_bump!r}, expected a boolean")
    order = int_field(result, "applicationOrder", METHOD, optional=True)
    return TransactionOutcome(
        tx_hash=asked.lower(),
        status=status,
        latest_ledger=latest,
        oldest_ledger=oldest,
        ledger=ledger,
        created_at=int_field(result, "createdAt", METHOD),
        application_order=order if "applicationOrder" in result else None,
        fee_bump=fee_bump,
        fee_charged=outcome.fee_charged.int64,
        result_code=result_code(outcome),
    )


def _decode(result: Mapping[str, Any], name: str, kind: Any, *, required: bool) -> Any:
    value = result.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise RpcProtocolError(METHOD, f"field {name!r} is {value!r}, expected base64 XDR")
    try:
        return kind.from_xdr_bytes(base64.b64decode(value, validate=True))
    except (binascii.Error, EOFError, ValueError, IndexError, TypeError) as exc:
        raise RpcProtocolError(
            METHOD, f"field {name!r} does not decode as {kind.__name__}: {exc}"
        ) from exc


def result_code(result: xdr.TransactionResult) -> str:
    """The transaction's result code, then each failed operation's ("op 2 PAYMENT_UNDERFUNDED"),
    looking inside a fee bump at the inner transaction's result."""
    code = result.result.code
    names = [code.name]
    operations = result.result.results
    pair = result.result.inner_result_pair
    if pair is not None:
        inner = pair.result.result
        names.append(inner.code.name)
        operations = inner.results
    failed = [
        f"op {index} {name}"
        for index, name in enumerate(operation_code(op) for op in operations or [])
        if not name.endswith("_SUCCESS")
    ]
    shown = failed[:_SHOWN_OPERATIONS]
    if len(failed) > len(shown):
        shown.append(f"and {len(failed) - len(shown)} more")
    return " / ".join(names) + (": " + ", ".join(shown) if shown else "")


def operation_code(operation: xdr.OperationResult) -> str:
    """An operation's result code name: opBAD_AUTH and the like, or its own (inner) code."""
    if operation.code != xdr.OperationResultCode.opINNER or operation.tr is None:
        return str(operation.code.name)
    inner = operation.tr
    for attribute in dir(inner):
        if attribute.endswith("_result"):
            value = getattr(inner, attribute)
            if value is not None and hasattr(value, "code"):
                return str(value.code.name)
    return str(inner.type.name)
