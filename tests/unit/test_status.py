"""ServiceStatus: the health states and when each one is reported, and that only its own
methods change it."""

from __future__ import annotations

import ast
import dataclasses
import time
from pathlib import Path

from stellar_reconciler import status as status_module
from stellar_reconciler.models import BlockKind, NetworkTip
from stellar_reconciler.status import AHEAD_POLLS, FAILURES_BEFORE_DEGRADED, ServiceStatus

FIELDS = frozenset(field.name for field in dataclasses.fields(ServiceStatus))


def tip(latest: int, oldest: int = 1) -> NetworkTip:
    return NetworkTip(latest_ledger=latest, oldest_ledger=oldest)


def test_starting_until_first_poll_and_checkpoint() -> None:
    """Before the first poll the service is starting and unhealthy."""
    status = ServiceStatus()
    assert status.health()["status"] == "starting"
    assert status.health()["healthy"] is False


def test_synced_and_catching_up_are_healthy() -> None:
    """Small lag is synced, larger lag is catching_up; both are healthy."""
    status = ServiceStatus()
    status.observe_tip(tip(100))
    status.record_progress(99)
    assert status.health()["status"] == "synced" and status.health()["healthy"]
    status.observe_tip(tip(500))
    assert status.health()["status"] == "catching_up" and status.health()["healthy"]
    assert status.health()["ledger_lag"] == 401


def test_lag_is_unknown_not_zero_when_the_checkpoint_is_ahead() -> None:
    """A checkpoint ahead of the node's tip reports lag None (unknown), never 0 or negative."""
    status = ServiceStatus()
    status.observe_tip(tip(90))
    status.record_progress(100)
    assert status.health()["ledger_lag"] is None


def test_lag_keeps_the_last_known_tip_while_the_rpc_fails() -> None:
    """A failing RPC leaves the last known tip (and when it was seen) in place for the lag."""
    status = ServiceStatus()
    status.observe_tip(tip(300))
    status.record_progress(144)
    status.record_poll_failure("getHealth: HTTP 503 from http://rpc/")
    health = status.health()
    assert health["ledger_lag"] == 156 and health["latest_ledger"] == 300
    assert health["latest_ledger_observed_at"] is not None


def test_starting_says_which_call_it_waits_for() -> None:
    """Before the first answer, health names the call it waits for, its URL and the wait."""
    started = time.monotonic()
    status = ServiceStatus(pending_calls=lambda: [("getHealth", "http://127.0.0.1:9/", started)])
    state, reason = status.state(now=started + 12.4)
    assert state == "starting"
    assert reason == "waiting for getHealth from http://127.0.0.1:9/ (no answer for 12s)"
    assert not status.health()["healthy"]


def test_a_call_unanswered_past_the_threshold_is_a_stall() -> None:
    """A synced service whose getHealth hangs past 2 x poll interval + 10 s turns stalled."""
    calls: list[tuple[str, str, float]] = []
    status = ServiceStatus(poll_interval=0.5, pending_calls=lambda: calls)
    status.observe_tip(tip(100))
    status.record_progress(100)
    now = time.monotonic()
    calls.append(("getHealth", "http://rpc/", now))
    assert status.call_stall_secs == 11.0
    assert status.state(now=now + 10.9)[0] == "synced"
    state, reason = status.state(now=now + 11.5)
    assert state == "stalled"
    assert reason is not None and "getHealth to http://rpc/" in reason and "11s" in reason


def test_database_faults_name_the_database() -> None:
    """A poll failed by the database says 'database failing', one failed by the RPC 'RPC'."""
    status = ServiceStatus()
    status.observe_tip(tip(100))
    status.record_progress(100)
    status.record_poll_failure("connection to server lost", "database")
    assert status.state()[1] == "database failing: connection to server lost"
    status.record_poll_failure("getHealth: HTTP 503", "RPC")
    assert status.state()[1] == "RPC failing: getHealth: HTTP 503"


def test_a_checkpoint_ahead_of_the_network_for_three_polls_is_unhealthy() -> None:
    """Checkpoint 1,002,038 against a network at 1,104: 503 after 3 polls, naming both."""
    status = ServiceStatus()
    status.observe_tip(tip(1_104))
    status.record_progress(1_002_038)
    for _ in range(AHEAD_POLLS - 1):
        status.observe_tip(tip(1_104))
        # One or two such polls can be a node lagging its peers behind a load balancer.
        assert status.health()["healthy"] is True
    status.observe_tip(tip(1_105))
    health = status.health()
    assert health["healthy"] is False and health["status"] == "degraded"
    assert "1002038" in health["reason"] and "1105" in health["reason"]
    assert "reset" in health["reason"] and "STELLAR_RPC_URL" in health["reason"]
    status.observe_tip(tip(1_002_040))
    assert status.health()["healthy"]


def test_repeated_failed_attempts_degrade_and_a_good_poll_recovers() -> None:
    """A few failed RPC attempts in a row make health degraded with the error; success clears."""
    status = ServiceStatus()
    status.observe_tip(tip(100))
    status.record_progress(100)
    for _ in range(FAILURES_BEFORE_DEGRADED):
        status.record_attempt(False, "getHealth: HTTP 500")
    health = status.health()
    assert health["status"] == "degraded" and not health["healthy"]
    assert "HTTP 500" in health["reason"] and health["last_error"] == "getHealth: HTTP 500"
    status.record_attempt(True)
    assert status.health()["healthy"]


def test_failed_poll_stays_degraded_until_progress() -> None:
    """A poll that failed after retries keeps health 503 even if later attempts succeed."""
    status = ServiceStatus()
    status.observe_tip(tip(100))
    status.record_progress(98)
    status.record_poll_failure("getLedgers: HTTP 500")
    status.record_attempt(True)
    assert status.health()["status"] == "degraded"
    status.record_progress(100)
    assert status.health()["status"] == "synced"


def test_stalled_when_no_progress_while_network_moves() -> None:
    """No commit for several ledger times while far behind is reported as stalled."""
    status = ServiceStatus(poll_interval=0.5)
    status.ledger_secs = 1.0
    status.observe_tip(tip(100))
    status.record_progress(50)
    later = time.monotonic() + 60
    state, reason = status.state(now=later)
    assert state == "stalled" and reason is not None and "50 ledgers ahead" in reason
    assert status.state(now=time.monotonic())[0] == "catching_up"


def test_blocking_reason_wins_and_carries_detail() -> None:
    """A blocking condition (e.g. a retention gap) is degraded with its kind and detail until
    cleared, and clearing one kind leaves a condition of another in place."""
    status = ServiceStatus()
    status.observe_tip(tip(100, oldest=50))
    status.record_progress(10)
    status.block("ledgers 11-49 are gone", {"first_missing_ledger": 11}, BlockKind.RETENTION_GAP)
    health = status.health()
    assert health["status"] == "degraded" and health["detail"]["first_missing_ledger"] == 11
    assert health["detail"]["kind"] == "retention_gap"
    status.unblock(BlockKind.HALTED)
    assert status.health()["status"] == "degraded"
    status.unblock(BlockKind.RETENTION_GAP)
    assert status.health()["status"] == "catching_up"


def test_ledger_time_estimated_from_close_times() -> None:
    """The ledger time comes from the network's own close times when it reports them."""
    status = ServiceStatus()
    status.observe_tip(
        NetworkTip(
            latest_ledger=101, oldest_ledger=1, latest_close_time=1500, oldest_close_time=1000
        )
    )
    assert status.ledger_secs == 5.0


def test_nats_publishing_failing_is_degraded_until_it_works_again() -> None:
    """The publisher's failure is a degraded reason of its own; cleared, health is back."""
    status = ServiceStatus()
    status.observe_tip(tip(100))
    status.record_progress(100)
    status.publishing_state("NATS publishing failing (nats://127.0.0.1:4222): closed")
    assert status.state() == ("degraded", status.publishing_failure)
    assert status.health()["healthy"] is False
    status.publishing_state(None)
    assert status.state() == ("synced", None)


def test_publishing_state_notifies_only_changes() -> None:
    """A new reason while failing is shown and notified; the same state again wakes no live
    view; None clears it."""
    status = ServiceStatus()
    status.publishing_state(None)
    seen = status.version
    status.publishing_state("closed")
    status.publishing_state("closed")
    assert status.version == seen + 1
    status.publishing_state("timed out")
    assert (status.publishing_failure, status.version) == ("timed out", seen + 2)
    status.publishing_state(None)
    assert status.publishing_failure is None and status.version == seen + 3


def test_unhealthy_conditions_notify_only_when_they_change() -> None:
    """Conditions make health degraded; setting the same ones again wakes no live view."""
    status = ServiceStatus()
    status.observe_tip(tip(100))
    status.record_progress(100)
    breaks = {"chain_break": "1 open chain_break discrepancies"}
    status.set_unhealthy_conditions(breaks)
    seen = status.version
    status.set_unhealthy_conditions(dict(breaks))
    assert status.version == seen
    assert status.state() == ("degraded", "1 open chain_break discrepancies")
    status.set_unhealthy_conditions({})
    assert status.version == seen + 1 and status.state() == ("synced", None)


def test_a_standby_is_as_healthy_as_the_leader_it_follows() -> None:
    """A standby reports the leader's state and checkpoint, naming it; with no leader, or a
    leader that does not answer, it is unhealthy and says why."""
    status = ServiceStatus()
    status.stand_by(None, None)
    assert status.health()["healthy"] is False
    assert "no replica holds" in status.health()["reason"]
    status.stand_by("http://10.0.0.1:3000/", None)
    assert "does not answer" in status.health()["reason"]
    leader = {"status": "synced", "healthy": True, "reason": None, "last_processed_ledger": 77}
    status.stand_by("http://10.0.0.1:3000/", leader)
    health = status.health()
    assert (health["status"], health["healthy"], health["role"]) == ("synced", True, "standby")
    assert (health["leader"], health["last_processed_ledger"]) == ("http://10.0.0.1:3000/", 77)
    status.stand_by("http://10.0.0.1:3000/", {**leader, "status": "stalled", "reason": "x"})
    assert status.health()["healthy"] is False
    assert status.health()["reason"] == "the leader at http://10.0.0.1:3000/: x"
    status.lead("http://10.0.0.2:3000/")
    assert (status.health()["role"], status.health()["leader"]) == (
        "leader",
        "http://10.0.0.2:3000/",
    )


def test_a_standby_that_cannot_reach_the_database_blames_the_database() -> None:
    """A replica whose lock tries fail for want of a database says 'database failing', not
    that no replica leads; once a try gets through, the usual standby reason is back."""
    status = ServiceStatus()
    status.stand_by(None, None)
    status.lock_unreachable("could not connect to 127.0.0.1:5432")
    health = status.health()
    assert health["healthy"] is False and health["role"] == "standby"
    assert health["reason"].startswith("database failing: could not connect to 127.0.0.1:5432")
    status.lock_unreachable(None)
    assert "no replica holds" in status.health()["reason"]


def _is_status(node: ast.expr) -> bool:
    """`status`, `self.status`, `ctx.status`, `self._status`: an expression naming a status."""
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    return name.lstrip("_").endswith("status")


def _status_field(node: ast.expr) -> str | None:
    """The field when `node` is `<a status>.<field>`, else None."""
    if isinstance(node, ast.Attribute) and node.attr in FIELDS and _is_status(node.value):
        return node.attr
    return None


def status_writes(source: str) -> list[tuple[int, str]]:
    """(line, field) of each assignment to a status field, of an item of one, and of each
    method called on one, in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign | ast.Delete):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            targets = [node.func.value]
        for target in targets:
            # Down the chain written through (`a.b[c].d`: a.b[c], a.b, a), not into indexes.
            part: ast.expr = target
            while isinstance(part, ast.Attribute | ast.Subscript):
                if field := _status_field(part):
                    found.append((node.lineno, field))
                    break
                part = part.value
    return found


def test_the_write_finder_sees_each_way_of_writing() -> None:
    """Assigning, adding to, subscripting and calling a method on a status field are found;
    reading one and calling the status's own methods are not."""
    source = """
ctx.status.paused = True
self.status.ahead_polls += 1
self._status.unhealthy_conditions["chain_break"] = "1 open"
del status.blocking_detail["error"]
service.status.catch_up.committed(1.0, 2, 1, 0, 2)
status.pause()
checkpoints[status.last_processed_ledger] = True
ledger = self.status.last_processed_ledger
passphrase = ctx.status.network.passphrase
"""
    assert status_writes(source) == [
        (2, "paused"),
        (3, "ahead_polls"),
        (4, "unhealthy_conditions"),
        (5, "blocking_detail"),
        (6, "catch_up"),
    ]


def test_only_status_py_changes_the_status() -> None:
    """No module but status.py assigns a ServiceStatus field or changes what one holds: the
    rest of the service changes it through its methods."""
    package = Path(status_module.__file__).parent
    writes = [
        f"{path.relative_to(package)}:{line}: {field}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "status.py"
        for line, field in status_writes(path.read_text())
    ]
    assert writes == []
