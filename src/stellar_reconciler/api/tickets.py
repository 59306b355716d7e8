"""Short-lived tickets: what a browser puts in a URL instead of a token, where a request
cannot carry an Authorization header (an EventSource, a followed link).

A ticket is random, is bought with the token sent as a header, and opens one kind of
resource (each kind has its own `Tickets`) until it expires. Held in memory: a restart
forgets them all, and the page simply asks for another.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

MAX_TICKETS = 1000


class Tickets:
    """Tickets valid for `lifetime` seconds from issue, at most MAX_TICKETS at once (the
    oldest are forgotten first)."""

    def __init__(self, lifetime: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime = lifetime
        self._clock = clock
        self._expiry: dict[str, float] = {}

    def issue(self) -> str:
        now = self._clock()
        self._forget_expired(now)
        if len(self._expiry) >= MAX_TICKETS:
            # Oldest first: dicts keep insertion order.
            del self._expiry[next(iter(self._expiry))]
        ticket = secrets.token_urlsafe(24)
        self._expiry[ticket] = now + self.lifetime
        return ticket

    def valid(self, ticket: str) -> bool:
        self._forget_expired(self._clock())
        return ticket in self._expiry

    def _forget_expired(self, now: float) -> None:
        for ticket in [t for t, expiry in self._expiry.items() if expiry <= now]:
            del self._expiry[ticket]
