"""CatchUp: how far a catch-up has come, how fast it goes, and when it should end.

The worker hands it every committed batch. It answers with a log line's fields when one is
due: at the start of a catch-up, then every `log_every` seconds (a catch-up commits many
batches a second, and a line per batch says nothing a person can read), and once when the
service has caught up. The dashboard reads the same figures. Rates come from the batches of
the last `window` seconds, so a catch-up that speeds up or slows down shows it within that
window rather than being averaged away. Pure: the caller passes the clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

LOG_EVERY_SECONDS = 10.0
RATE_WINDOW_SECONDS = 30.0
# A backlog at most this long is following the tip, not catching up (as status.SYNCED_LAG).
CAUGHT_UP_LAG = 2


@dataclass(frozen=True, slots=True)
class Progress:
    """One catch-up's figures after its latest committed batch."""

    first_ledger: int
    last_ledger: int
    latest_ledger: int
    done_ledgers: int
    remaining_ledgers: int
    events: int
    elapsed_seconds: float
    # None until two batches give a time span to measure over.
    ledgers_per_second: float | None
    events_per_second: float | None
    eta_seconds: float | None

    @property
    def fraction(self) -> float:
        total = self.done_ledgers + self.remaining_ledgers
        return self.done_ledgers / total if total else 1.0

    def as_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["fraction"] = round(self.fraction, 4)
        for name in ("elapsed_seconds", "ledgers_per_second", "events_per_second", "eta_seconds"):
            if body[name] is not None:
                body[name] = round(body[name], 1)
        return body

    def log_fields(self, finished: bool = False) -> dict[str, Any]:
        """What a `catch_up_progress` log line carries."""
        return {
            "done": self.done_ledgers,
            "remaining": self.remaining_ledgers,
            "percent": round(100 * self.fraction, 1),
            "ledgers_per_s": _rounded(self.ledgers_per_second),
            "events_per_s": _rounded(self.events_per_second),
            "eta_s": None if finished else _rounded(self.eta_seconds),
            "elapsed_s": round(self.elapsed_seconds, 1),
            "finished": finished,
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class CatchUp:
    """Follows one catch-up at a time; between catch-ups `current` is None."""

    def __init__(
        self,
        log_every: float = LOG_EVERY_SECONDS,
        window: float = RATE_WINDOW_SECONDS,
        caught_up_lag: int = CAUGHT_UP_LAG,
    ) -> None:
        self.log_every = log_every
        self.window = window
        self.caught_up_lag = caught_up_lag
        self.current: Progress | None = None
        self._started_at = 0.0
        self._logged_at = 0.0
        # (time, ledgers done, events) after each batch, cumulative, oldest first.
        self._samples: deque[tuple[float, int, int]] = deque()

    def committed(
        self, now: float, last_ledger: int, ledgers: int, events: int, latest_ledger: int
    ) -> dict[str, Any] | None:
        """Record a committed batch of `ledgers` ledgers ending at `last_ledger`; returns the
        fields of a log line when one is due, else None."""
        remaining = max(0, latest_ledger - last_ledger)
        previous = self.current
        if previous is None:
            if remaining <= self.caught_up_lag:
                return None  # following the tip: nothing to report
            self._started_at = self._logged_at = now
            self._samples.clear()
            first, done, total_events = last_ledger - ledgers + 1, ledgers, events
        else:
            first = previous.first_ledger
            done, total_events = previous.done_ledgers + ledgers, previous.events + events
        self._samples.append((now, done, total_events))
        # Keep the newest sample at or before the window's start, so the span covers it.
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window:
            self._samples.popleft()
        ledger_rate, event_rate = self._rates()
        eta = remaining / ledger_rate if ledger_rate else None
        progress = Progress(
            first_ledger=first,
            last_ledger=last_ledger,
            latest_ledger=latest_ledger,
            done_ledgers=done,
            remaining_ledgers=remaining,
            events=total_events,
            elapsed_seconds=now - self._started_at,
            ledgers_per_second=ledger_rate,
            events_per_second=event_rate,
            eta_seconds=eta,
        )
        if remaining <= self.caught_up_lag:
            self.current = None
            return progress.log_fields(finished=True)
        self.current = progress
        if previous is None or now - self._logged_at >= self.log_every:
            self._logged_at = now
            return progress.log_fields()
        return None

    def _rates(self) -> tuple[float | None, float | None]:
        oldest_time, oldest_done, oldest_events = self._samples[0]
        newest_time, newest_done, newest_events = self._samples[-1]
        span = newest_time - oldest_time
        if span <= 0:
            return None, None
        return (newest_done - oldest_done) / span, (newest_events - oldest_events) / span
