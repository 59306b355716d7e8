"""Fault rules, tamper bookkeeping and the --fault spec of the simulated network."""

from __future__ import annotations

import pytest

from stellar_reconciler.simnet import (
    FaultBook,
    FaultKind,
    SimNetConfig,
    SimNetwork,
    events_scan_covers,
    ledgers_page_covers,
    starts_at,
)
from stellar_reconciler.simnet.cli import FaultSpecError, parse_fault
from stellar_reconciler.simnet.codec import b64, i128, unb64, vec
from stellar_reconciler.simnet.tamper import TamperBook, altered
from tests.integration.harness import wait_for_sync


def test_a_rule_fires_its_count_then_disappears() -> None:
    """times=2 hits the next two matching requests and then lets requests through."""
    book = FaultBook()
    rule = book.add(FaultKind.HTTP_503, method="getEvents", times=2)
    assert book.take("getLedgers", {}) is None
    assert book.take("getEvents", {}) is rule
    assert book.take("getEvents", {}) is rule
    assert book.take("getEvents", {}) is None
    assert rule.fired == 2
    assert book.rules == []


def test_a_rule_without_a_count_lasts_until_cleared() -> None:
    """times=None keeps firing for any method until clear()."""
    book = FaultBook()
    book.add(FaultKind.DROP, times=None)
    assert all(book.take(m, {}) is not None for m in ["getHealth", "getEvents"] * 5)
    book.clear()
    assert book.take("getHealth", {}) is None


def test_a_burst_rule_fires_until_its_seconds_pass() -> None:
    """for_secs makes a burst: every matching request fails until the time is up, then the
    rule is gone; a burst of no time at all is refused."""
    book = FaultBook()
    rule = book.add(FaultKind.RPC_ERROR, code=-32602, times=None, for_secs=0.2)
    assert book.take("getEvents", {}) is rule
    assert 0 < rule.describe()["expiresInSecs"] <= 0.2
    wait_for_sync(lambda: book.take("getEvents", {}) is None, 5, "the burst to end")
    assert book.rules == [] and rule.fired >= 1
    with pytest.raises(ValueError, match="for_secs"):
        book.add(FaultKind.HTTP_503, for_secs=0)


def test_rules_match_on_predicates_and_param_subsets() -> None:
    """A predicate or a JSON subset narrows a rule to the requests it describes."""
    book = FaultBook()
    by_predicate = book.add(FaultKind.HTTP_500, when=starts_at(7))
    by_subset = book.add(FaultKind.HTTP_502, match={"pagination": {"limit": 3}})
    assert book.take("getEvents", {"startLedger": 8}) is None
    assert book.take("getEvents", {"startLedger": 7}) is by_predicate
    assert book.take("getEvents", {"pagination": {"limit": 3, "cursor": "x"}}) is by_subset


def test_oldest_matching_rule_wins_and_can_be_removed() -> None:
    """Rules apply in the order added; remove() takes one out by id."""
    book = FaultBook()
    first = book.add(FaultKind.SLOW, delay=0.1, times=None)
    second = book.add(FaultKind.DROP, times=None)
    assert book.take("getHealth", None) is first
    assert book.remove(first.id)
    assert not book.remove(first.id)
    assert book.take("getHealth", None) is second


def test_range_predicates_know_how_each_method_pages() -> None:
    """Ledger-page and event-scan predicates follow start/cursor/limit/endLedger rules."""
    page = ledgers_page_covers(2)
    assert page({"startLedger": 2})
    assert page({"pagination": {"cursor": "1", "limit": 5}})
    assert not page({"startLedger": 3})
    assert not page({"pagination": {"cursor": "2"}})
    scan = events_scan_covers(500)
    assert scan({"startLedger": 100})
    assert not scan({"startLedger": 100, "endLedger": 500})
    assert scan({"pagination": {"cursor": f"{(400 << 32):019d}-0000000000"}})
    assert not scan({"startLedger": 501})


def test_rpc_error_messages_default_to_the_servers_wording() -> None:
    """Without a message, -32001 and -32098 read as stellar-rpc's overload errors."""
    book = FaultBook()
    overload = book.add(FaultKind.RPC_ERROR, code=-32001)
    queue = book.add(FaultKind.RPC_ERROR, code=-32098)
    assert overload.error_message("getEvents") == "request exceeded processing limit threshold"
    assert "rpc queue for getEvents" in queue.error_message("getEvents")


def test_bad_rules_are_refused() -> None:
    """A zero count, negative delay or unknown kind is refused when the rule is added."""
    book = FaultBook()
    with pytest.raises(ValueError, match="times"):
        book.add(FaultKind.DROP, times=0)
    with pytest.raises(ValueError, match="delay"):
        book.add(FaultKind.SLOW, delay=-1)
    with pytest.raises(ValueError, match="explode"):
        book.add("explode")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("getEvents:http_503:2", {"kind": FaultKind.HTTP_503, "method": "getEvents", "times": 2}),
        ("*:503", {"kind": FaultKind.HTTP_503, "method": None}),
        (
            "*:rpc_error=-32001:*",
            {"kind": FaultKind.RPC_ERROR, "method": None, "code": -32001, "times": None},
        ),
        ("getLedgers:slow=2.5", {"kind": FaultKind.SLOW, "method": "getLedgers", "delay": 2.5}),
        ("any:http_429=3", {"kind": FaultKind.HTTP_429, "method": None, "retry_after": "3"}),
        ("getHealth:drop", {"kind": FaultKind.DROP, "method": "getHealth"}),
    ],
)
def test_fault_specs_parse(spec: str, expected: dict[str, object]) -> None:
    """--fault METHOD:KIND[=VALUE][:COUNT] reads into FaultBook.add arguments."""
    assert parse_fault(spec) == expected


@pytest.mark.parametrize(
    "spec", ["getEvents", "getEvents:boom", "x:drop=1", "x:slow=fast", "x:drop:0", "a:b:c:d"]
)
def test_bad_fault_specs_are_refused(spec: str) -> None:
    """Malformed --fault values raise FaultSpecError quoting the spec."""
    with pytest.raises(FaultSpecError, match="--fault"):
        parse_fault(spec)


def test_tamper_drops_once_and_alters_from_the_second_read() -> None:
    """A dropped event is skipped once; an altered one changes only after its first read."""
    book = TamperBook()
    book.drop_event("a")
    assert book.take_drop("a")
    assert not book.take_drop("a")
    truth = b64(i128(41))
    book.alter_event("b")
    assert book.served_value("b", truth) is None
    assert book.served_value("b", truth) == b64(i128(42))
    assert book.served_value("c", truth) is None
    assert book.describe()["dropped"] == ["a"]


def test_altered_values_stay_valid_scvals() -> None:
    """Non-i128 values are altered by wrapping them in a vec."""
    truth = b64(vec([i128(1)]))
    assert unb64(altered(truth)) == vec([unb64(truth)])


def test_network_tampering_checks_the_event_exists() -> None:
    """drop/alter name real events; unknown ids and indexes are refused."""
    net = SimNetwork(SimNetConfig(first_ledger=2, prebuilt_ledgers=5, events_per_ledger=3))
    event_id = net.drop_event_at(3, 0)
    assert event_id == net.record_events(3, 3)[0]["id"]
    with pytest.raises(ValueError, match="no event"):
        net.alter_event(f"{(3 << 32) | (999 << 12):019d}-0000000000")
    with pytest.raises(ValueError, match="no event 99"):
        net.drop_event_at(3, 99)
    with pytest.raises(ValueError, match="outside"):
        net.break_chain_at(99)


def test_retention_window_forgets_old_ledgers() -> None:
    """oldest = max(first, latest - window + 1), and shrinking the window moves it up."""
    net = SimNetwork(SimNetConfig(first_ledger=2, prebuilt_ledgers=50, retention_window=20))
    assert (net.oldest_ledger, net.latest_ledger) == (32, 51)
    net.set_retention_window(5)
    assert net.oldest_ledger == 47
    net.set_retention_window(1000)
    assert net.oldest_ledger == 2
