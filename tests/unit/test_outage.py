"""Outage: the wait between failed polls, the few log lines an outage is allowed, and how
the periodic gap check spaces its tries of a failing lake."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from stellar_reconciler.errors import (
    DatabaseUnavailableError,
    RpcHttpStatusError,
    RpcUnreachableError,
)
from stellar_reconciler.outage import FillBackoff, Outage, PollBackoff

BACKOFF = PollBackoff(poll_interval=0.5, transient_cap=60.0, fault_cap=300.0)
REFUSED = RpcUnreachableError("getHealth", "http://rpc/", "refused", "ConnectError")
UNAUTHORIZED = RpcHttpStatusError("getHealth", "http://rpc/", 401)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_wait_doubles_to_its_cap_and_a_success_resets_it() -> None:
    """Transient faults: 1, 2, 4 ... 60 s; faults a retry cannot fix go on to 300 s."""
    outage = Outage(BACKOFF, summary_every=60, clock=Clock())
    waits = [outage.failed(REFUSED, None) for _ in range(9)]
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    outage.recovered()
    assert outage.failed(UNAUTHORIZED, None) == 1
    assert [outage.failed(UNAUTHORIZED, None) for _ in range(10)][-3:] == [256, 300, 300]


@given(st.integers(min_value=1, max_value=10_000))
def test_the_wait_never_exceeds_the_cap(failures: int) -> None:
    """However long the outage, no wait is longer than the larger cap, nor shorter than 0."""
    for error in (REFUSED, UNAUTHORIZED, DatabaseUnavailableError("down")):
        assert 0 < BACKOFF.delay(failures, error) <= 300


def test_an_outage_logs_once_then_a_summary_per_period_then_its_end() -> None:
    """1,000 failed polls over 10 minutes with 60 s summaries: 1 error, 10 summaries, 1 info."""
    clock = Clock()
    outage = Outage(BACKOFF, summary_every=60, clock=clock)
    with capture_logs() as logs:
        for _ in range(1000):
            outage.failed(REFUSED, 41)
            clock.now += 0.6
        outage.recovered()
    events = [(entry["event"], entry["log_level"]) for entry in logs]
    assert events[0] == ("dependency_failing", "error")
    assert events[1:-1] == [("dependency_still_failing", "warning")] * 9
    assert events[-1] == ("dependency_recovered", "info")
    assert logs[0]["fault"] == "refused" and "http://rpc/" in logs[0]["reason"]
    assert logs[-1]["attempts"] == 1000


def test_a_different_dependency_failing_is_a_new_outage() -> None:
    """The RPC failing, then the database: each start is logged at error level, by name."""
    outage = Outage(BACKOFF, summary_every=60, clock=Clock())
    with capture_logs() as logs:
        outage.failed(REFUSED, None)
        outage.failed(DatabaseUnavailableError("connection refused"), None)
    assert [(e["event"], e["dependency"]) for e in logs] == [
        ("dependency_failing", "RPC"),
        ("dependency_failing", "database"),
    ]


def test_success_without_an_outage_logs_nothing() -> None:
    """A good poll after good polls is silent."""
    outage = Outage(BACKOFF, summary_every=60, clock=Clock())
    with capture_logs() as logs:
        outage.recovered()
    assert logs == []


def test_the_lake_is_tried_again_later_and_later_while_it_fails_and_at_once_once_filled() -> None:
    """Each failed try of a gap, or of what is left of it, doubles the wait before the next
    (up to the cap); gaps elsewhere are not held back; a fill forgets the streak."""
    clock = Clock()
    tries = FillBackoff(period=30.0, cap=100.0, clock=clock)
    assert tries.due((150, 169))
    assert tries.failed((150, 169)) == 30.0
    assert [tries.failed((160, 164)) for _ in range(3)] == [60.0, 100.0, 100.0]
    assert not tries.due((150, 169)) and tries.due((900, 950))
    clock.now += 99.0
    assert not tries.due((160, 164))
    clock.now += 1.0
    assert tries.due((160, 164))
    tries.filled((160, 164))
    assert tries.failed((160, 164)) == 30.0
