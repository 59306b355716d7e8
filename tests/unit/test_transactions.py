"""getTransaction answers: every recorded mainnet transaction parses through StellarRpc, result
codes are decoded from resultXdr, and answers that break the spec are refused by field."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from stellar_sdk import Network, TransactionBuilder, xdr

from stellar_reconciler.errors import RpcProtocolError
from stellar_reconciler.rpc import RetryPolicy, StellarRpc
from stellar_reconciler.simnet.transactions import result_xdr
from stellar_reconciler.transactions import (
    TransactionOutcome,
    operation_code,
    parse_transaction,
    result_code,
)
from tests.fixtures import load

FAST = RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.002)
CORPUS = load("mainnet_getTransactions_corpus.json")["records"]
HASH = "ab" * 32


def answer(record: dict[str, Any], status: str = "SUCCESS", **extra: Any) -> dict[str, Any]:
    """A getTransaction result around a recorded transaction, with the spec's fields."""
    return {
        "latestLedger": 63800200,
        "latestLedgerCloseTime": "1754300000",
        "oldestLedger": 63680000,
        "oldestLedgerCloseTime": "1753600000",
        "status": status,
        "txHash": record["txHash"],
        "applicationOrder": 3,
        "feeBump": False,
        "envelopeXdr": record["envelopeXdr"],
        "resultXdr": record["resultXdr"],
        "resultMetaXdr": record["resultMetaXdr"],
        "ledger": 63800108,
        "createdAt": "1754299400",
        **extra,
    }


async def ask(result: dict[str, Any], tx_hash: str) -> TransactionOutcome:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "result": result})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        return await StellarRpc(client, "http://rpc.test/", FAST).get_transaction(tx_hash)


async def test_every_recorded_mainnet_transaction_parses() -> None:
    """All 50 corpus transactions come back SUCCESS with their ledger, time and fee, and
    their result codes read txSUCCESS (a fee bump's: outer and inner success)."""
    codes = set()
    for record in CORPUS:
        outcome = await ask(answer(record), record["txHash"].upper())
        envelope = TransactionBuilder.from_xdr(
            record["envelopeXdr"], Network.PUBLIC_NETWORK_PASSPHRASE
        )
        assert envelope.hash_hex() == outcome.tx_hash == record["txHash"]
        assert (outcome.status, outcome.ledger, outcome.created_at) == (
            "SUCCESS",
            63800108,
            1754299400,
        )
        assert outcome.fee_charged is not None and outcome.fee_charged > 0
        codes.add(outcome.result_code)
    assert codes == {"txSUCCESS", "txFEE_BUMP_INNER_SUCCESS / txSUCCESS"}


async def test_not_found_needs_only_the_ledger_range() -> None:
    """NOT_FOUND carries the node's range and nothing about a ledger (an older server may
    leave out txHash and the close times)."""
    outcome = await ask(
        {
            "status": "NOT_FOUND",
            "txHash": HASH,
            "latestLedger": 200,
            "latestLedgerCloseTime": "1",
            "oldestLedger": 100,
            "oldestLedgerCloseTime": "1",
        },
        HASH,
    )
    assert outcome == TransactionOutcome(HASH, "NOT_FOUND", 200, 100)
    older = {"status": "NOT_FOUND", "latestLedger": 200, "oldestLedger": 100}
    assert parse_transaction(older, HASH.upper()) == outcome


def failed_answer(result: bytes, **extra: Any) -> dict[str, Any]:
    record = {**CORPUS[0], "txHash": HASH, "resultXdr": base64.b64encode(result).decode()}
    return answer(record, "FAILED", **extra)


def test_a_failed_transaction_names_its_failed_operation() -> None:
    """The code of a failed transaction is txFAILED with the operation's own result code."""
    outcome = parse_transaction(failed_answer(result_xdr(HASH, 100, failed=True)), HASH)
    assert outcome.status == "FAILED"
    assert outcome.result_code == "txFAILED: op 0 INVOKE_HOST_FUNCTION_TRAPPED"


def op_failed(code: xdr.OperationResultCode) -> xdr.OperationResult:
    return xdr.OperationResult(code)


def test_fee_bumps_and_many_failed_operations_are_summarised() -> None:
    """A fee bump's inner failure is named after the outer code; operation-level codes
    (opBAD_AUTH) are read, and more than five failed operations are counted, not listed."""
    inner = xdr.InnerTransactionResult(
        xdr.Int64(100),
        xdr.InnerTransactionResultResult(
            xdr.TransactionResultCode.txFAILED,
            results=[op_failed(xdr.OperationResultCode.opBAD_AUTH)] * 7,
        ),
        xdr.InnerTransactionResultExt(0),
    )
    outer = xdr.TransactionResult(
        xdr.Int64(200),
        xdr.TransactionResultResult(
            xdr.TransactionResultCode.txFEE_BUMP_INNER_FAILED,
            inner_result_pair=xdr.InnerTransactionResultPair(xdr.Hash(b"\x01" * 32), inner),
        ),
        xdr.TransactionResultExt(0),
    )
    assert result_code(outer) == (
        "txFEE_BUMP_INNER_FAILED / txFAILED: op 0 opBAD_AUTH, op 1 opBAD_AUTH, op 2 opBAD_AUTH, "
        "op 3 opBAD_AUTH, op 4 opBAD_AUTH, and 2 more"
    )
    too_late = xdr.TransactionResult(
        xdr.Int64(100),
        xdr.TransactionResultResult(xdr.TransactionResultCode.txTOO_LATE),
        xdr.TransactionResultExt(0),
    )
    assert result_code(too_late) == "txTOO_LATE"
    assert operation_code(op_failed(xdr.OperationResultCode.opNO_ACCOUNT)) == "opNO_ACCOUNT"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"status": "PENDING"}, "'status'"),
        ({"txHash": "cd" * 32}, "'txHash'"),
        ({"ledger": 1}, "outside the node's range"),
        ({"oldestLedger": 63800300}, "after latestLedger"),
        ({"resultXdr": "not base64!"}, "'resultXdr'"),
        ({"resultXdr": None}, "'resultXdr'"),
        ({"envelopeXdr": "AAAA"}, "'envelopeXdr' does not decode"),
        ({"status": "FAILED"}, "status FAILED disagrees with the result code"),
        ({"createdAt": "yesterday"}, "'createdAt'"),
        ({"feeBump": "no"}, "'feeBump'"),
    ],
)
def test_answers_breaking_the_spec_are_refused_by_field(change: dict[str, Any], says: str) -> None:
    """A verdict is written from this answer, so each broken field is an RpcProtocolError."""
    record = CORPUS[0]
    with pytest.raises(RpcProtocolError, match=says):
        parse_transaction({**answer(record), **change}, record["txHash"])
