"""Tampering makes the simulated node misreport in the ways reconciliation must catch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from stellar_sdk import xdr

from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.simnet.testing import result, rpc


@pytest.fixture
def served() -> Iterator[tuple[SimNetwork, str]]:
    net = SimNetwork(SimNetConfig(first_ledger=2, prebuilt_ledgers=30, events_per_ledger=5))
    with serve_in_thread(net) as url:
        yield net, url


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


def events(
    client: httpx.Client, url: str, start: int = 2, limit: int = 1000
) -> list[dict[str, Any]]:
    page: list[dict[str, Any]] = result(
        client, url, "getEvents", {"startLedger": start, "pagination": {"limit": limit}}
    )["events"]
    return page


def test_dropped_event_is_missing_from_its_first_serving_only(
    client: httpx.Client, served: tuple[SimNetwork, str]
) -> None:
    """The first answer lacks the event but is otherwise complete; the next answer has it."""
    net, url = served
    truth = net.record_events(2, net.latest_ledger)
    dropped = net.drop_event_at(10, 2)
    first = events(client, url)
    assert [e["id"] for e in first] == [e["id"] for e in truth if e["id"] != dropped]
    assert events(client, url) == truth
    assert net.tamper.describe()["dropped"] == [dropped]


def test_dropping_inside_a_full_page_keeps_the_page_full(
    client: httpx.Client, served: tuple[SimNetwork, str]
) -> None:
    """With a limit, the scan goes past the dropped event, so nothing after it is skipped."""
    net, url = served
    truth = net.record_events(2, net.latest_ledger)
    net.drop_event(truth[3]["id"])
    page = result(client, url, "getEvents", {"startLedger": 2, "pagination": {"limit": 10}})
    assert [e["id"] for e in page["events"]] == [e["id"] for e in truth[:3] + truth[4:11]]
    assert page["cursor"] == truth[10]["id"]


def test_altered_event_changes_from_its_second_read(
    client: httpx.Client, served: tuple[SimNetwork, str]
) -> None:
    """First read true, later reads another valid ScVal; the record keeps the truth."""
    net, url = served
    target = net.record_events(5, 5)[0]
    net.alter_event(target["id"])
    reads = [next(e for e in events(client, url, 5) if e["id"] == target["id"]) for _ in range(3)]
    assert reads[0] == target
    assert reads[1]["value"] != target["value"]
    assert reads[2]["value"] == reads[1]["value"]
    xdr.SCVal.from_xdr(reads[1]["value"])
    assert {k: v for k, v in reads[1].items() if k != "value"} == {
        k: v for k, v in target.items() if k != "value"
    }
    assert net.record_events(5, 5)[0] == target


def test_altered_event_can_take_a_given_value(
    client: httpx.Client, served: tuple[SimNetwork, str]
) -> None:
    """alter_event with a value serves exactly that ScVal from the second read."""
    net, url = served
    target = net.record_events(6, 6)[1]
    replacement = xdr.SCVal(xdr.SCValType.SCV_VOID).to_xdr()
    net.alter_event(target["id"], replacement)
    events(client, url, 6)
    assert (
        next(e for e in events(client, url, 6) if e["id"] == target["id"])["value"] == replacement
    )


def test_broken_chain_is_served_consistently(
    client: httpx.Client, served: tuple[SimNetwork, str]
) -> None:
    """After break_chain_at(L), every read shows L's previousLedgerHash unlike L-1's hash."""
    net, url = served
    net.break_chain_at(15)
    for _ in range(2):
        page = result(client, url, "getLedgers", {"startLedger": 14, "pagination": {"limit": 3}})
        parent, broken, child = page["ledgers"]
        prev_of = [
            xdr.LedgerHeaderHistoryEntry.from_xdr(
                x["headerXdr"]
            ).header.previous_ledger_hash.hash.hex()
            for x in (broken, child)
        ]
        assert prev_of[0] != parent["hash"]
        assert prev_of[1] == broken["hash"]
    latest = result(client, url, "getLatestLedger")
    assert latest["id"] == net.ledger_hash(net.latest_ledger)


def test_tampering_over_the_control_api(
    client: httpx.Client, served: tuple[SimNetwork, str]
) -> None:
    """POST /_simnet/tamper drops, alters, breaks the chain and shrinks the window."""
    net, url = served
    control = url + "_simnet/tamper"
    dropped = client.post(control, json={"kind": "drop_event", "ledger": 4, "index": 0}).json()[
        "eventId"
    ]
    assert dropped not in {e["id"] for e in events(client, url)}
    altered = client.post(control, json={"kind": "alter_event", "ledger": 4, "index": 1}).json()[
        "eventId"
    ]
    assert altered in client.get(control).json()["altered"]
    broken = client.post(control, json={"kind": "break_chain", "ledger": 20}).json()
    assert broken["hash"] == net.ledger_hash(20)
    assert client.get(control).json()["brokenLinks"] == [20]
    shrunk = client.post(control, json={"kind": "retention", "window": 5}).json()
    assert shrunk["oldestLedger"] == net.latest_ledger - 4
    assert rpc(client, url, "getEvents", {"startLedger": 2})["error"]["code"] == -32600
    assert result(client, url, "getHealth")["oldestLedger"] == net.latest_ledger - 4
    assert client.delete(control).json()["pendingDrops"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "drop_event", "ledger": 4, "index": 99},
        {"kind": "drop_event", "eventId": "garbage"},
        {"kind": "break_chain", "ledger": 10_000},
        {"kind": "retention", "window": 0},
        {"kind": "teleport"},
    ],
)
def test_impossible_tampering_is_400(
    client: httpx.Client, served: tuple[SimNetwork, str], body: dict[str, Any]
) -> None:
    """Tampering with what does not exist is refused with 400 and a reason."""
    _, url = served
    response = client.post(url + "_simnet/tamper", json=body)
    assert response.status_code == 400
    assert response.json()["error"]
