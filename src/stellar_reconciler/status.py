"""ServiceStatus: the small shared object the worker writes and the web API reads.

Health is a fact the worker records (what it last saw, when it last moved); whether that is
healthy is decided here, at read time, so "stalled" needs no timer of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stellar_reconciler.models import BlockKind, NetworkInfo, NetworkTip, iso_utc
from stellar_reconciler.progress import CatchUp

# Mainnet's mean ledger time; used until the network's own close times tell us better.
DEFAULT_LEDGER_SECS = 5.6
# How many failed RPC attempts in a row make the service report itself degraded (a single
# 429 or reset is normal weather on a public endpoint).
FAILURES_BEFORE_DEGRADED = 3
# A lag up to this many ledgers counts as synced: a ledger may close while we commit.
SYNCED_LAG = 2
# No progress for this many ledger times while the network moves on means stalled.
STALL_LEDGERS = 5
# An RPC request unanswered for 2 x POLL_INTERVAL_SECS + this many seconds is a stall: the
# health turns unhealthy at once instead of waiting out RPC_TIMEOUT_SECS and every retry.
CALL_STALL_EXTRA_SECS = 10.0
# Polls in a row that find the stored checkpoint ahead of the network's latest ledger before
# health says so (one such poll can be a node behind a load balancer that lags its peers).
AHEAD_POLLS = 3

# (method, shown URL, monotonic start) of each request awaiting an answer; see StellarRpc.pending.
PendingCalls = Callable[[], Sequence[tuple[str, str, float]]]


def _no_calls() -> Sequence[tuple[str, str, float]]:
    return ()


@dataclass
class ServiceStatus:
    """What the worker last knew, plus whether an operator paused it; changed only through
    its methods."""

    poll_interval: float = 1.0
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_monotonic: float = field(default_factory=time.monotonic)
    network: NetworkInfo | None = None
    tip: NetworkTip | None = None
    # Unix time of the last observe_tip, so a kept tip shows its age (metrics, outages).
    tip_observed_at: float | None = None
    last_processed_ledger: int | None = None
    last_success_at: datetime | None = None
    last_progress_monotonic: float | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    consecutive_failures: int = 0
    # Set when a whole poll failed after its retries; cleared by the next good poll or batch.
    poll_failing: bool = False
    # Which dependency that failure came from: "RPC" or "database".
    failing_dependency: str = "RPC"
    # Polls in a row that found the checkpoint ahead of the network's latest ledger.
    ahead_polls: int = 0
    # Where to learn the RPC requests in flight (set by the service; none by default).
    pending_calls: PendingCalls = field(default=_no_calls, repr=False)
    # A condition that holds until something changes it (a retention gap, a halted worker).
    blocking_reason: str | None = None
    blocking_kind: BlockKind | None = None
    blocking_detail: dict[str, Any] | None = None
    worker_running: bool = False
    paused: bool = False
    first_poll_done: bool = False
    ledger_secs: float = DEFAULT_LEDGER_SECS
    # Extra reasons (open chain breaks, failed re-verification) that make health 503.
    unhealthy_conditions: dict[str, str] = field(default_factory=dict)
    # Why the NATS publisher cannot send (set by the publisher; None while it can, or is off).
    publishing_failure: str | None = None
    # Rate and ETA of the catch-up under way, fed by the worker's committed batches.
    catch_up: CatchUp = field(default_factory=lambda: CatchUp(caught_up_lag=SYNCED_LAG))
    # Bumped on every change a live view should show; see wait_changed.
    # Leader and standbys: this replica's role, the leader's address, and (on a standby)
    # the leader's own /health answer, which a standby's health follows.
    role: str = "leader"
    leader_url: str | None = None
    leader_health: dict[str, Any] | None = None
    # Set while a standby cannot reach the database to try the leader's lock.
    lock_error: str | None = None
    version: int = 0
    _changed: asyncio.Event | None = field(default=None, repr=False)
    # The loop live views wait on, so threads can wake them safely.
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)

    # --- change notification ---------------------------------------------------------------

    def notify(self) -> None:
        """Something a live view shows has changed (called on the event loop)."""
        self.version += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def notify_threadsafe(self) -> None:
        """notify() from a worker thread (a sync API handler)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.notify)

    async def wait_changed(self, seen_version: int, within: float) -> int:
        """Wait until the version moves past `seen_version` or `within` seconds pass; returns
        the version then."""
        self._loop = asyncio.get_running_loop()
        if self.version != seen_version:
            return self.version
        if self._changed is None:
            self._changed = asyncio.Event()
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), within)
        return self.version

    # --- written by the service's parts ---------------------------------------------------

    def track_pending_calls(self, pending_calls: PendingCalls) -> None:
        """Learn the RPC requests in flight from `pending_calls` (see StellarRpc.pending)."""
        self.pending_calls = pending_calls

    def record_network(self, network: NetworkInfo) -> None:
        self.network = network

    def worker_started(self) -> None:
        self.worker_running = True

    def worker_stopped(self) -> None:
        self.worker_running = False

    def forget_poll_failure(self) -> None:
        """A fresh worker starts with no failed poll behind it."""
        self.poll_failing = False

    def set_unhealthy_conditions(self, conditions: dict[str, str]) -> None:
        """Replace the extra reasons for a 503 (notifying only when they differ)."""
        if conditions != self.unhealthy_conditions:
            self.unhealthy_conditions = dict(conditions)
            self.notify()

    def publishing_state(self, failure: str | None) -> None:
        """The NATS publisher's state: why it cannot send, or None once it can."""
        if failure != self.publishing_failure:
            self.publishing_failure = failure
            self.notify()

    # --- asked by an operator, through Controls -------------------------------------------

    def pause(self) -> None:
        """The worker takes no new batch until resume()."""
        self.paused = True
        self.notify()

    def resume(self) -> None:
        self.paused = False
        self.notify()

    # --- written by the worker -------------------------------------------------------------

    def observe_tip(self, tip: NetworkTip) -> None:
        previous = self.tip
        self.tip = tip
        self.tip_observed_at = time.time()
        self.first_poll_done = True
        checkpoint = self.last_processed_ledger
        self.ahead_polls = (
            self.ahead_polls + 1 if checkpoint is not None and checkpoint > tip.latest_ledger else 0
        )
        if (
            tip.latest_close_time
            and tip.oldest_close_time
            and tip.latest_ledger > tip.oldest_ledger
        ):
            span = tip.latest_close_time - tip.oldest_close_time
            estimate = span / (tip.latest_ledger - tip.oldest_ledger)
            if estimate > 0:
                self.ledger_secs = estimate
        if previous is None or self.last_progress_monotonic is None:
            self.last_progress_monotonic = time.monotonic()

    def record_progress(self, ledger: int) -> None:
        self.last_processed_ledger = ledger
        self.last_success_at = datetime.now(UTC)
        self.last_progress_monotonic = time.monotonic()
        self.poll_failing = False
        self.notify()

    def record_batch(self, last_ledger: int, ledgers: int, events: int) -> dict[str, Any] | None:
        """A batch of `ledgers` ledgers ending at `last_ledger` committed; returns the fields of
        a catch-up log line when one is due (see CatchUp.committed)."""
        latest = self.tip.latest_ledger if self.tip else last_ledger
        line = self.catch_up.committed(time.monotonic(), last_ledger, ledgers, events, latest)
        self.record_progress(last_ledger)
        return line

    def moved_checkpoint(self, ledger: int) -> None:
        """The checkpoint moved other than by a committed batch (lost ledgers skipped with
        consent, or a move made outside the worker's loop)."""
        self.last_processed_ledger = ledger

    def record_idle_success(self) -> None:
        """A poll that found nothing new still proves the RPC answers."""
        self.poll_failing = False
        self.last_success_at = datetime.now(UTC)

    def record_poll_failure(self, message: str, dependency: str = "RPC") -> None:
        """A whole poll failed; `dependency` ("RPC" or "database") is what health blames."""
        self.poll_failing = True
        self.failing_dependency = dependency
        self.record_error(message)
        self.notify()

    def record_attempt(self, ok: bool, message: str | None = None) -> None:
        if ok:
            self.consecutive_failures = 0
            return
        self.consecutive_failures += 1
        self.record_error(message or "RPC attempt failed")

    def record_error(self, message: str) -> None:
        self.last_error = message
        self.last_error_at = datetime.now(UTC)

    def block(
        self, reason: str, detail: dict[str, Any] | None = None, kind: BlockKind = BlockKind.HALTED
    ) -> None:
        self.blocking_reason = reason
        self.blocking_kind = kind
        self.blocking_detail = detail
        self.record_error(reason)
        self.notify()

    def unblock(self, kind: BlockKind | None = None) -> None:
        """Clear the blocking condition; with `kind`, only a condition of that kind."""
        if kind is not None and self.blocking_kind is not kind:
            return
        self.blocking_reason = None
        self.blocking_kind = None
        self.blocking_detail = None
        self.notify()

    def lead(self, url: str) -> None:
        self.role, self.leader_url, self.leader_health = "leader", url, None
        self.notify()

    def stand_by(self, leader_url: str | None, leader_health: dict[str, Any] | None) -> None:
        self.role, self.leader_url, self.leader_health = "standby", leader_url, leader_health
        self.notify()

    def lock_unreachable(self, error: str | None) -> None:
        """Why the leader's lock could not even be tried (the database does not answer), or
        None once it could: a standby for that reason blames the database, not the leader."""
        if error != self.lock_error:
            self.lock_error = error
            self.notify()

    # --- read by the API -------------------------------------------------------------------

    @property
    def ledger_lag(self) -> int | None:
        """Ledgers behind the last known tip; None when unknown (no tip yet, no checkpoint, or a
        checkpoint ahead of the tip, where 0 would read as "synced")."""
        if self.tip is None or self.last_processed_ledger is None:
            return None
        if self.last_processed_ledger > self.tip.latest_ledger:
            return None
        return self.tip.latest_ledger - self.last_processed_ledger

    @property
    def call_stall_secs(self) -> float:
        """How long one RPC request may go unanswered before health calls it a stall."""
        return 2 * self.poll_interval + CALL_STALL_EXTRA_SECS

    def _oldest_pending(self, now: float) -> tuple[str, str, float] | None:
        """(method, URL, seconds waited) of the request waiting longest, if any."""
        calls = self.pending_calls()
        if not calls:
            return None
        method, url, started = min(calls, key=lambda call: call[2])
        return method, url, max(0.0, now - started)

    def _ahead_reason(self) -> str | None:
        if self.ahead_polls < AHEAD_POLLS or self.tip is None:
            return None
        return (
            f"the database's checkpoint (ledger {self.last_processed_ledger}) is ahead of the "
            f"network's latest ledger ({self.tip.latest_ledger}) for {self.ahead_polls} polls in "
            "a row: the network was probably reset (a test network), or STELLAR_RPC_URL points "
            "at another network than the one this database was filled from; use a fresh "
            "DATABASE_URL for a reset network, or fix STELLAR_RPC_URL"
        )

    def state(self, now: float | None = None) -> tuple[str, str | None]:
        """(status, reason): one of starting, catching_up, synced, degraded, stalled."""
        now = time.monotonic() if now is None else now
        if self.role == "standby":
            return self._standby_state()
        if self.blocking_reason:
            return "degraded", self.blocking_reason
        if self.unhealthy_conditions:
            return "degraded", "; ".join(self.unhealthy_conditions.values())
        if self.paused:
            return "degraded", "paused by an operator; resume it from the dashboard or the API"
        ahead = self._ahead_reason()
        if ahead:
            return "degraded", ahead
        waiting = self._oldest_pending(now)
        started = self.first_poll_done and self.last_processed_ledger is not None
        # Before the first answer the state is "starting" either way; its reason tells the wait.
        if started and waiting is not None and waiting[2] > self.call_stall_secs:
            method, url, seconds = waiting
            return "stalled", (
                f"RPC stalled: {method} to {url} has not answered for {seconds:.0f}s (the "
                f"stall threshold is {self.call_stall_secs:g}s)"
            )
        if self.poll_failing:
            return "degraded", f"{self.failing_dependency} failing: {self.last_error}"
        if self.consecutive_failures >= FAILURES_BEFORE_DEGRADED:
            return "degraded", f"RPC failing: {self.last_error}"
        if self.publishing_failure:
            return "degraded", self.publishing_failure
        if not started:
            if waiting is not None:
                method, url, seconds = waiting
                return "starting", f"waiting for {method} from {url} (no answer for {seconds:.0f}s)"
            return "starting", None
        lag = self.ledger_lag or 0
        stall_after = max(STALL_LEDGERS * self.ledger_secs, 3 * self.poll_interval)
        if (
            lag > SYNCED_LAG
            and self.last_progress_monotonic is not None
            and now - self.last_progress_monotonic > stall_after
        ):
            return "stalled", (
                f"no ledger committed for {now - self.last_progress_monotonic:.0f}s while the "
                f"network is {lag} ledgers ahead"
            )
        if lag > SYNCED_LAG:
            return "catching_up", None
        return "synced", None

    def _standby_state(self) -> tuple[str, str | None]:
        """A standby is as healthy as the leader it follows, and says whose state it is."""
        if self.lock_error is not None:
            return "degraded", (
                f"database failing: {self.lock_error}; this replica stands by until it can "
                "take the leader's lock again"
            )
        if self.leader_url is None:
            return "degraded", (
                "standby: no replica holds the leader's lock yet (is any replica able to reach "
                "the database and the RPC?)"
            )
        leader = self.leader_health
        if leader is None:
            return "degraded", f"standby: the leader at {self.leader_url} does not answer /health"
        state = str(leader.get("status", "degraded"))
        reason = leader.get("reason")
        return state, f"the leader at {self.leader_url}: {reason}" if reason else None

    def health(self) -> dict[str, Any]:
        state, reason = self.state()
        healthy = state in ("catching_up", "synced")
        last = self.last_processed_ledger
        if self.role == "standby" and self.leader_health is not None:
            last = self.leader_health.get("last_processed_ledger", last)
        return {
            "status": state,
            "healthy": healthy,
            "reason": reason,
            "role": self.role,
            "leader": self.leader_url,
            "last_processed_ledger": last,
            "latest_ledger": self.tip.latest_ledger if self.tip else None,
            "latest_ledger_observed_at": iso_utc(
                datetime.fromtimestamp(self.tip_observed_at, UTC) if self.tip_observed_at else None
            ),
            "ledger_lag": self.ledger_lag,
            "last_success_at": iso_utc(self.last_success_at),
            "last_error": self.last_error,
            "last_error_at": iso_utc(self.last_error_at),
            "detail": self._detail(),
        }

    def _detail(self) -> dict[str, Any] | None:
        if self.blocking_kind is None:
            return self.blocking_detail
        return {"kind": self.blocking_kind.value, **(self.blocking_detail or {})}

    def uptime_seconds(self) -> float:
        return time.monotonic() - self.started_monotonic
