"""The simulated node's getTransaction over HTTP: the OpenRPC result schema, real XDR, failures
the network produced or a test declared, NOT_FOUND outside the window, stellar-rpc's errors."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from stellar_sdk import xdr

from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.simnet.testing import result, result_schema, rpc, schema_problems
from stellar_reconciler.transactions import parse_transaction

KEYS = [
    "latestLedger",
    "latestLedgerCloseTime",
    "oldestLedger",
    "oldestLedgerCloseTime",
    "status",
    "txHash",
]


@pytest.fixture
def net() -> SimNetwork:
    return SimNetwork(SimNetConfig(first_ledger=1000, prebuilt_ledgers=15, events_per_ledger=8))


@pytest.fixture
def url(net: SimNetwork) -> Iterator[str]:
    with serve_in_thread(net) as base:
        yield base


def ask(url: str, tx_hash: str) -> dict[str, object]:
    with httpx.Client(timeout=10) as client:
        answer = result(client, url, "getTransaction", {"hash": tx_hash})
    assert schema_problems(answer, result_schema("getTransaction")) == []
    assert isinstance(answer, dict)
    return answer


def transactions(net: SimNetwork) -> dict[str, tuple[int, bool]]:
    """Each transaction hash of the record: its ledger and whether its calls succeeded."""
    found: dict[str, tuple[int, bool]] = {}
    for e in net.record_events(net.first_ledger, net.latest_ledger):
        ledger, ok = found.get(e["txHash"], (e["ledger"], True))
        found[e["txHash"]] = (ledger, ok and e["inSuccessfulContractCall"])
    return found


def test_every_transaction_is_served_with_its_ledger_and_outcome(net: SimNetwork, url: str) -> None:
    """Each transaction of the record answers SUCCESS or FAILED (as its calls did) in its own
    ledger, with createdAt its close time and XDR that decodes; the client's checks pass."""
    seen = transactions(net)
    assert any(not ok for _, ok in seen.values()) and any(ok for _, ok in seen.values())
    for tx_hash, (ledger, ok) in seen.items():
        answer = ask(url, tx_hash)
        assert list(answer)[:6] == KEYS
        assert answer["status"] == ("SUCCESS" if ok else "FAILED")
        assert answer["ledger"] == ledger
        assert answer["createdAt"] == str(net.close_time(ledger))
        xdr.TransactionEnvelope.from_xdr(str(answer["envelopeXdr"]))
        xdr.TransactionMeta.from_xdr(str(answer["resultMetaXdr"]))
        outcome = parse_transaction(answer, tx_hash)
        expected = "txSUCCESS" if ok else "txFAILED: op 0 INVOKE_HOST_FUNCTION_TRAPPED"
        assert outcome.result_code == expected


def test_declared_failures_unknown_hashes_and_the_window(net: SimNetwork, url: str) -> None:
    """A hash declared failed answers FAILED (in the latest ledger when the network never
    held it); a forgotten or unknown hash, or one older than the window, is NOT_FOUND."""
    unknown = "0f" * 32
    assert ask(url, unknown) == {
        "latestLedger": net.latest_ledger,
        "latestLedgerCloseTime": str(net.close_time(net.latest_ledger)),
        "oldestLedger": 1000,
        "oldestLedgerCloseTime": str(net.close_time(1000)),
        "status": "NOT_FOUND",
        "txHash": unknown,
    }
    net.transactions.fail(unknown)
    failed = ask(url, unknown.upper())
    assert (failed["status"], failed["ledger"]) == ("FAILED", net.latest_ledger)
    good = next(h for h, (_, ok) in transactions(net).items() if ok)
    net.transactions.fail(good)
    assert ask(url, good)["status"] == "FAILED"
    net.transactions.forget(good)
    assert ask(url, good)["status"] == "NOT_FOUND"
    first = next(h for h, (ledger, _) in transactions(net).items() if ledger == 1000 and h != good)
    assert ask(url, first)["status"] in ("SUCCESS", "FAILED")
    net.set_retention_window(5)
    assert ask(url, first)["status"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"hash": "ab"}, "unexpected hash length (2)"),
        ({"hash": "zz" * 32}, "incorrect hash: encoding/hex: invalid byte: U+007A 'z'"),
        ({}, "unexpected hash length (0)"),
        ({"hash": 5}, "cannot unmarshal number"),
    ],
)
def test_bad_hashes_get_stellar_rpcs_invalid_params(
    url: str, params: dict[str, object], message: str
) -> None:
    """A malformed hash is a -32602 with stellar-rpc's wording."""
    with httpx.Client(timeout=10) as client:
        envelope = rpc(client, url, "getTransaction", params)
    assert envelope["error"]["code"] == -32602
    assert message in envelope["error"]["message"]


def test_the_control_api_declares_outcomes(net: SimNetwork, url: str) -> None:
    """POST /_simnet/transactions declares a hash failed (in a given ledger) or unknown, from
    another process; bad input is a 400."""
    tx_hash = "1e" * 32
    control = url.rstrip("/") + "/_simnet/transactions"
    with httpx.Client(timeout=10) as client:
        failed = client.post(control, json={"hash": tx_hash, "outcome": "failed", "ledger": 1003})
        assert failed.status_code == 201
        assert (ask(url, tx_hash)["status"], ask(url, tx_hash)["ledger"]) == ("FAILED", 1003)
        forgotten = client.post(control, json={"hash": tx_hash, "outcome": "not_found"})
        assert forgotten.status_code == 201 and ask(url, tx_hash)["status"] == "NOT_FOUND"
        assert client.get(control).json() == {"failed": [], "forgotten": [tx_hash]}
        bad = client.post(control, json={"hash": "xy", "outcome": "failed"})
        odd = client.post(control, json={"hash": tx_hash, "outcome": "lost"})
    assert (bad.status_code, odd.status_code) == (400, 400)
    assert "64 hexadecimal" in bad.json()["error"] and "failed or not_found" in odd.json()["error"]
