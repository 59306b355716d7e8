"""Controls: what operators ask of the running service (from the API), and long jobs' progress.

The API and the worker never import each other; they meet here. Everything runs on the one
event loop, so plain attributes and asyncio primitives are enough.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from stellar_reconciler.models import iso_utc
from stellar_reconciler.status import ServiceStatus

JobKind = Literal["rescan", "verify", "backfill"]
JobState = Literal["queued", "running", "done", "failed"]
# Finished jobs kept for the API to show; older ones are forgotten.
KEEP_FINISHED_JOBS = 50


@dataclass
class Job:
    """A rescan, a verification or a backfill of a ledger range, with live progress."""

    id: int
    kind: JobKind
    first_ledger: int
    last_ledger: int
    requested_by: str
    state: JobState = "queued"
    done_ledgers: int = 0
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def total_ledgers(self) -> int:
        return self.last_ledger - self.first_ledger + 1

    @property
    def progress(self) -> float:
        """Fraction done, 0.0 to 1.0 (1.0 only once the job has finished)."""
        if self.state == "done":
            return 1.0
        return min(self.done_ledgers / self.total_ledgers, 0.999)

    @property
    def rate(self) -> float | None:
        """Ledgers done per second since the job started (None before it has done any)."""
        if self.started_at is None or not self.done_ledgers:
            return None
        end = self.finished_at or datetime.now(UTC)
        elapsed = (end - self.started_at).total_seconds()
        return self.done_ledgers / elapsed if elapsed > 0 else None

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the rate so far (0 once finished; None before a rate is known)."""
        if self.state in ("done", "failed"):
            return 0.0
        rate = self.rate
        if rate is None:
            return None
        return max(self.total_ledgers - self.done_ledgers, 0) / rate

    def as_json(self) -> dict[str, Any]:
        rate, eta = self.rate, self.eta_seconds
        return {
            "id": self.id,
            "kind": self.kind,
            "first_ledger": self.first_ledger,
            "last_ledger": self.last_ledger,
            "state": self.state,
            "done_ledgers": self.done_ledgers,
            "total_ledgers": self.total_ledgers,
            "progress": round(self.progress, 4),
            "percent": round(self.progress * 100, 2),
            "rate_ledgers_per_sec": round(rate, 1) if rate is not None else None,
            "eta_seconds": round(eta, 1) if eta is not None else None,
            "requested_by": self.requested_by,
            "created_at": iso_utc(self.created_at),
            "started_at": iso_utc(self.started_at),
            "finished_at": iso_utc(self.finished_at),
            "error": self.error,
            "result": self.result,
        }


class Controls:
    """Restart requests, pause and resume, and the queue of rescan, verification and backfill
    jobs."""

    def __init__(self, status: ServiceStatus | None = None) -> None:
        # A pause is kept in the status, which the worker and health read; without one (a
        # one-off verification, where nothing pauses) a status of its own.
        self._status = status if status is not None else ServiceStatus()
        self.restart_requested = asyncio.Event()
        self._ids = itertools.count(1)
        self._jobs: dict[int, Job] = {}
        self._queue: asyncio.Queue[Job] = asyncio.Queue()

    def request_restart(self) -> None:
        self.restart_requested.set()

    def pause(self) -> None:
        """The worker takes no new batch until resume() (the batch in hand still commits)."""
        self._status.pause()

    def resume(self) -> None:
        self._status.resume()

    def submit(self, kind: JobKind, first: int, last: int, requested_by: str) -> Job:
        job = Job(next(self._ids), kind, first, last, requested_by)
        self._jobs[job.id] = job
        self._queue.put_nowait(job)
        self._forget_old()
        return job

    async def next_job(self) -> Job:
        return await self._queue.get()

    def job(self, job_id: int) -> Job | None:
        return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        return sorted(self._jobs.values(), key=lambda j: j.id, reverse=True)

    def active(self) -> list[Job]:
        return [j for j in self._jobs.values() if j.state in ("queued", "running")]

    def _forget_old(self) -> None:
        finished = [j for j in self.jobs() if j.state in ("done", "failed")]
        for job in finished[KEEP_FINISHED_JOBS:]:
            del self._jobs[job.id]
