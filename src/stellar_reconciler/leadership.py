"""Leadership: which replica runs the worker, the maintenance and the publishers.

Every replica serves the API and the dashboard. On PostgreSQL the one holding the advisory
lock (store/lease.py) leads; the others are standbys that try the lock every
LEADER_RETRY_SECS and meanwhile follow the leader's /health, so a load balancer may probe any
replica. A leader checks its lock as often; if it finds it gone it stops leading and the
replica stands by again (its batches are fenced in the database meanwhile, so it writes
nothing after the loss) and leads again only after taking the lock anew.

On SQLite there is one writer per file: the file lock is taken at start-up or the start is
refused, and the replica always leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import structlog

from stellar_reconciler.errors import DatabaseUnavailableError
from stellar_reconciler.metrics import Metrics
from stellar_reconciler.status import ServiceStatus
from stellar_reconciler.store import AdvisoryLease, advertised_url

log = structlog.get_logger("stellar_reconciler.leadership")

# How long a standby waits for the leader's /health before calling it unanswered.
LEADER_HEALTH_TIMEOUT_SECS = 2.0

Lead = Callable[[asyncio.Event], Awaitable[None]]


class Leadership:
    """Standby until the lock is ours, then lead until stopped or until the lock is lost."""

    def __init__(
        self,
        lease: AdvisoryLease,
        status: ServiceStatus,
        metrics: Metrics,
        url: str,
        retry_secs: float,
    ) -> None:
        self.lease = lease
        self.status = status
        self.metrics = metrics
        self.url = url
        self.retry_secs = retry_secs
        # The last leader seen while standing by: its open writes are ended at takeover.
        self._former: str | None = None
        # The leader's URL while standing by, shared by the tries and the health follower.
        self._leader: str | None = None

    async def first_try(self) -> bool:
        """One try for the lock at start-up, and the takeover's clean-up when it is ours: a
        replica that finds the lock free starts its worker as promptly as a lone service."""
        try:
            won = await asyncio.to_thread(self.lease.try_acquire)
        except DatabaseUnavailableError as exc:
            log.warning("leader_lock_unreachable", error=str(exc))
            self.status.lock_unreachable(str(exc))
            return False
        if won:
            await self._take_over()
        return won

    async def run(self, stop: asyncio.Event, lead: Lead, *, won: bool = False) -> None:
        """Lead now (`won`: `first_try` took the lock), or stand by until the lock is ours;
        after a lost lock (a database restart, a frozen process) stand by again."""
        try:
            while not stop.is_set():
                if not won:
                    if not await self._stand_by(stop):
                        return
                    await self._take_over()
                won = False
                await self._lead(stop, lead)
        finally:
            await asyncio.to_thread(self.lease.close)

    async def _take_over(self) -> None:
        started = time.monotonic()
        evicted = await asyncio.to_thread(self.lease.evict_writers, self._former)
        self.status.lead(self.url)
        self.metrics.set_leader(True)
        log.info(
            "leading",
            url=self.url,
            former=advertised_url(self._former),
            ended_writes=evicted,
            takeover_secs=round(time.monotonic() - started, 3),
        )

    async def _stand_by(self, stop: asyncio.Event) -> bool:
        """Try the lock until it is ours (True) or `stop` is set (False), following the
        leader's health meanwhile (in its own task: a frozen leader must not slow the tries)."""
        self._leader = None
        async with httpx.AsyncClient(timeout=LEADER_HEALTH_TIMEOUT_SECS) as client:
            following = asyncio.create_task(self._follow(client, stop))
            try:
                return await self._try_until_ours(stop)
            finally:
                following.cancel()

    async def _try_until_ours(self, stop: asyncio.Event) -> bool:
        self.metrics.set_leader(False)
        while not stop.is_set():
            try:
                if await asyncio.to_thread(self.lease.try_acquire):
                    self.status.lock_unreachable(None)
                    return True
                holder = await asyncio.to_thread(self.lease.holder)
                self.status.lock_unreachable(None)
            except DatabaseUnavailableError as exc:
                if self.status.lock_error is None:
                    log.warning("leader_lock_unreachable", error=str(exc))
                self.status.lock_unreachable(str(exc))
                holder = None
            self._former = holder or self._former
            url = advertised_url(holder)
            if url != self._leader:
                log.info("standby", leader=url)
                self._leader = url
                self.status.stand_by(url, None)
            await _wait(stop, self.retry_secs)
        return False

    async def _follow(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            url = self._leader
            health = await _health_of(client, url)
            if url == self._leader:
                self.status.stand_by(url, health)
            await _wait(stop, self.retry_secs)

    async def _lead(self, stop: asyncio.Event, lead: Lead) -> None:
        leading = asyncio.Event()
        loop = asyncio.get_running_loop()
        # The heartbeat runs on a thread of its own: a busy event loop or a full thread pool
        # must not keep it from answering, or the lease would end under load.
        heartbeat = _Heartbeat(
            self.lease, self.retry_secs, lambda: loop.call_soon_threadsafe(leading.set)
        )
        heartbeat.start()

        async def relay() -> None:
            await stop.wait()
            leading.set()

        relaying = asyncio.create_task(relay())
        try:
            await lead(leading)
        finally:
            leading.set()
            relaying.cancel()
            heartbeat.stop()
            self.metrics.set_leader(False)
        if heartbeat.lost and not stop.is_set():
            # Its batches were fenced from the moment the lock went; it stands by again and
            # leads once more only after taking the lock anew.
            log.error(
                "leadership_lost",
                url=self.url,
                reason="the leader's lock session ended (a database restart, or this process "
                "was frozen for more than LEADER_LEASE_SECS); standing by",
            )
            self.status.stand_by(None, None)


class _Heartbeat(threading.Thread):
    """Asks the database every `every` seconds whether our lease still holds the lock."""

    def __init__(self, lease: AdvisoryLease, every: float, on_lost: Callable[[], object]) -> None:
        super().__init__(name="leader-heartbeat", daemon=True)
        self.lease = lease
        self.every = every
        self.on_lost = on_lost
        self.lost = False
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.every):
            if not self.lease.holds():
                self.lost = True
                self.on_lost()
                return

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=5)


async def _health_of(client: httpx.AsyncClient, leader: str | None) -> dict[str, Any] | None:
    if leader is None:
        return None
    try:
        response = await client.get(leader.rstrip("/") + "/health")
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) else None


async def _wait(event: asyncio.Event, secs: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), secs)
