"""LieSchedule: the simulated network's lies, told on ledgers as they close, spaced out."""

from __future__ import annotations

import pytest

from stellar_reconciler.demo import lie_schedule
from stellar_reconciler.simnet import LieSchedule, SimNetConfig, SimNetwork
from stellar_reconciler.simnet.cursor import Cursor


def test_lies_come_at_their_offsets_and_alternate() -> None:
    """First after 10 ledgers, second after 20, then every 30: drop, alter, drop, ..."""
    schedule = LieSchedule(start=100, first_after=10, second_after=20, every=30)
    assert schedule.due(109, told=0) is None
    assert schedule.due(110, told=0) == "drop"
    assert schedule.due(119, told=1) is None
    assert schedule.due(120, told=1) == "alter"
    assert schedule.due(149, told=2) is None
    assert schedule.due(150, told=2) == "drop"
    assert schedule.due(180, told=3) == "alter"
    # A lie that could not be told on its ledger (no events) is told on the next one.
    assert schedule.due(112, told=0) == "drop"


def test_a_schedule_that_cannot_space_its_lies_is_refused() -> None:
    """The second lie must come after the first, and the period must be at least a ledger."""
    with pytest.raises(ValueError, match="first_after < second_after"):
        LieSchedule(start=1, first_after=5, second_after=5, every=1)
    with pytest.raises(ValueError, match="every >= 1"):
        LieSchedule(start=1, first_after=1, second_after=2, every=0)


def test_demo_lies_come_at_30_and_60_seconds_then_every_minute() -> None:
    """At the demo's 2 s ledgers: 15 ledgers, 30 ledgers, then every 30."""
    assert lie_schedule(1_000, 2.0) == LieSchedule(1_000, 15, 30, 30)
    fast = lie_schedule(1_000, 30.0)
    assert 0 < fast.first_after < fast.second_after and fast.every >= 1


def test_the_network_tells_each_lie_before_it_publishes_the_ledger() -> None:
    """Closed ledgers carry the scheduled lies: the event is pending a drop or altered, and
    only ledgers at or past each offset were lied about."""
    net = SimNetwork(SimNetConfig(seed=5, first_ledger=10, prebuilt_ledgers=5, events_per_ledger=4))
    start = net.latest_ledger
    net.schedule_lies(LieSchedule(start=start, first_after=2, second_after=4, every=3))
    net.close_ledgers(10)
    kinds = [kind for kind, _ in net.lies_told]
    assert kinds[:4] == ["drop", "alter", "drop", "alter"]
    ledgers = [Cursor.parse(event_id).ledger for _, event_id in net.lies_told]
    assert ledgers[0] >= start + 2 and ledgers[1] >= start + 4 and ledgers[2] >= start + 7
    described = net.tamper.describe()
    assert set(described["pendingDrops"]) == {e for k, e in net.lies_told if k == "drop"}
    assert set(described["altered"]) == {e for k, e in net.lies_told if k == "alter"}
    net.schedule_lies(None)
    told = len(net.lies_told)
    net.close_ledgers(10)
    assert len(net.lies_told) == told
