"""Webhooks: a signed JSON POST to every WEBHOOK_URLS entry for each new discrepancy.

The discrepancies table is the outbox (notified_at marks delivery), so a notification
survives restarts and never blocks ingestion: this task only reads what the worker and the
maintenance already committed. Delivery is at least once; receivers deduplicate on the
X-Reconciler-Delivery header (the discrepancy id).

Signature: X-Reconciler-Signature: sha256=HEX, the HMAC-SHA256 with WEBHOOK_SECRET of
"{X-Reconciler-Timestamp}.{raw body}", so a receiver can also refuse old replays.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog

from stellar_reconciler.errors import DatabaseUnavailableError
from stellar_reconciler.store import Store

log = structlog.get_logger("stellar_reconciler.webhook")

MAX_ATTEMPTS = 20
MAX_BACKOFF_SECONDS = 300.0


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def backoff(attempt: int, initial: float = 1.0) -> float:
    """Exponential with full jitter, capped: attempt 1 waits up to 1 s, then 2, 4, ... 300."""
    return random.uniform(0, min(MAX_BACKOFF_SECONDS, initial * 2 ** (attempt - 1)))


@dataclass
class _Pending:
    delivered_to: set[str] = field(default_factory=set)
    attempts: int = 0
    next_try: float = 0.0


class WebhookSender:
    def __init__(
        self,
        store: Store,
        urls: tuple[str, ...],
        secret: str,
        service_name: str,
        client: httpx.AsyncClient | None = None,
        poll_seconds: float = 1.0,
        initial_backoff: float = 1.0,
    ) -> None:
        self.store = store
        self.urls = urls
        self.secret = secret
        self.service_name = service_name
        self.client = client or httpx.AsyncClient(timeout=10)
        self.poll_seconds = poll_seconds
        self.initial_backoff = initial_backoff
        self._pending: dict[int, _Pending] = {}

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self.deliver_due()
                except DatabaseUnavailableError as exc:
                    log.warning("webhook_outbox_unavailable", error=str(exc))
                try:
                    await asyncio.wait_for(stop.wait(), self.poll_seconds)
                except TimeoutError:
                    continue
        finally:
            await self.client.aclose()

    async def deliver_due(self) -> None:
        """Send every undelivered discrepancy whose backoff has passed."""
        now = time.monotonic()
        for item in await asyncio.to_thread(self.store.discrepancies.undelivered, 50, MAX_ATTEMPTS):
            pending = self._pending.setdefault(item["id"], _Pending())
            if pending.next_try > now:
                continue
            await self._deliver(item, pending)

    async def _deliver(self, item: dict[str, Any], pending: _Pending) -> None:
        body = json.dumps(
            {"event": "discrepancy.opened", "service": self.service_name, "discrepancy": item},
            separators=(",", ":"),
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "x-reconciler-delivery": str(item["id"]),
            "x-reconciler-timestamp": timestamp,
            "x-reconciler-signature": sign(self.secret, timestamp, body),
        }
        for url in self.urls:
            if url in pending.delivered_to:
                continue
            try:
                response = await self.client.post(url, content=body, headers=headers)
                if 200 <= response.status_code < 300:
                    pending.delivered_to.add(url)
                else:
                    log.warning(
                        "webhook_refused", url=url, status=response.status_code, id=item["id"]
                    )
            except httpx.HTTPError as exc:
                log.warning("webhook_failed", url=url, error=type(exc).__name__, id=item["id"])
        done = pending.delivered_to.issuperset(self.urls)
        await asyncio.to_thread(self.store.discrepancies.mark_notified, item["id"], done)
        if done:
            self._pending.pop(item["id"], None)
            return
        pending.attempts += 1
        pending.next_try = time.monotonic() + backoff(pending.attempts, self.initial_backoff)
        if pending.attempts >= MAX_ATTEMPTS:
            log.error("webhook_given_up", id=item["id"], attempts=pending.attempts)
