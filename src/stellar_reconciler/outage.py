"""Outage: a run of failed polls, how long to wait before the next one, and what to log.

A dead RPC used to write five warnings per poll, forever. An outage is logged three times
at most per summary period instead: once at error level when it starts (with the reason), a
"still failing" summary at most every `summary_every` seconds, and once at info level when a
poll succeeds again. Between failed polls the wait doubles up to a cap, so a long outage
costs the RPC (and the log) little, and the first success resets it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from stellar_reconciler.config import Settings
from stellar_reconciler.errors import ReconcilerError, RpcError
from stellar_reconciler.models import iso_utc

log = structlog.get_logger("stellar_reconciler.worker")


@dataclass(frozen=True, slots=True)
class PollBackoff:
    """The wait after the n-th failed poll in a row: poll interval x 2^n, up to a cap that
    is longer for faults a retry inside one call could not fix."""

    poll_interval: float
    transient_cap: float
    fault_cap: float

    @classmethod
    def from_settings(cls, settings: Settings) -> PollBackoff:
        return cls(
            poll_interval=settings.poll_interval_secs,
            transient_cap=settings.poll_failure_max_backoff_secs,
            fault_cap=settings.rpc_fault_max_backoff_secs,
        )

    def delay(self, failures: int, error: ReconcilerError) -> float:
        retryable = not isinstance(error, RpcError) or error.retryable
        cap = self.transient_cap if retryable else max(self.transient_cap, self.fault_cap)
        # 2**failures overflows a float long before any cap matters; stop doubling at 2**30.
        return float(min(cap, self.poll_interval * 2 ** min(failures, 30)))


class FillBackoff:
    """When the periodic gap check may next try the lake for a gap: each failed try plans a
    backfill run and reads the lake again, so while the lake keeps failing for a gap (or what
    is left of it: chunks that were written shrink it), the tries thin out, the check's
    period x 2^failures up to `cap` seconds. An operator's verify or backfill job tries at
    once, whatever this says."""

    def __init__(
        self, period: float, cap: float = 3600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.period, self.cap, self.clock = period, cap, clock
        self._next: dict[tuple[int, int], tuple[float, int]] = {}

    def _overlapping(self, gap: tuple[int, int]) -> list[tuple[int, int]]:
        return [r for r in self._next if r[0] <= gap[1] and gap[0] <= r[1]]

    def due(self, gap: tuple[int, int]) -> bool:
        now = self.clock()
        return all(self._next[r][0] <= now for r in self._overlapping(gap))

    def failed(self, gap: tuple[int, int]) -> float:
        """Record a failed try; returns the seconds until the next."""
        before = self._overlapping(gap)
        failures = max((self._next.pop(r)[1] for r in before), default=0)
        wait = float(min(self.cap, self.period * 2 ** min(failures, 30)))
        self._next[gap] = (self.clock() + wait, failures + 1)
        return wait

    def filled(self, gap: tuple[int, int]) -> None:
        for r in self._overlapping(gap):
            del self._next[r]


def dependency_of(error: ReconcilerError) -> str:
    """What health and the logs blame: the RPC for RpcError, else the database."""
    return "RPC" if isinstance(error, RpcError) else "database"


class Outage:
    """The failure streak of the worker's polls; `failed` returns the wait before the next."""

    def __init__(
        self,
        backoff: PollBackoff,
        summary_every: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backoff = backoff
        self.summary_every = summary_every
        self._clock = clock
        self.failures = 0
        self.dependency: str | None = None
        self.since: datetime | None = None
        self._started = 0.0
        self._last_summary = 0.0

    @property
    def active(self) -> bool:
        return self.failures > 0

    def failed(self, error: ReconcilerError, checkpoint: int | None) -> float:
        """Count a failed poll, log it if it starts (or changes) an outage or a summary is
        due, and return how many seconds to wait before the next poll."""
        now = self._clock()
        dependency = dependency_of(error)
        fault = getattr(error, "fault", "database")
        if self.failures == 0 or dependency != self.dependency:
            self._started = self._last_summary = now
            self.since = datetime.now(UTC)
            self.dependency = dependency
            log.error(
                "dependency_failing",
                dependency=dependency,
                fault=fault,
                reason=str(error),
                checkpoint=checkpoint,
            )
        elif now - self._last_summary >= self.summary_every:
            self._last_summary = now
            log.warning(
                "dependency_still_failing",
                dependency=dependency,
                attempts=self.failures + 1,
                since=iso_utc(self.since),
                fault=fault,
                last_error=str(error),
                checkpoint=checkpoint,
            )
        self.failures += 1
        return self.backoff.delay(self.failures, error)

    def recovered(self) -> None:
        """A poll succeeded: log the end of an outage (if there was one) and reset."""
        if self.failures:
            log.info(
                "dependency_recovered",
                dependency=self.dependency,
                attempts=self.failures,
                outage_secs=round(self._clock() - self._started, 1),
            )
        self.failures = 0
        self.dependency = None
        self.since = None
