"""Paging through getLedgers and getEvents the way the real server pages.

getEvents is the subtle one (see docs/stellar-rpc-notes.md): one call scans at most 10,000
ledgers, a short or empty page is not the end, and a cursor cannot be combined with an
endLedger. `EventPager` therefore follows the cursor as one continuous stream and hands
out events ledger range by ledger range; events fetched past the range asked for wait in a
small buffer for the next range instead of being fetched again.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from stellar_reconciler.decode import ledger_of_cursor
from stellar_reconciler.errors import RpcProtocolError, RpcTransientError
from stellar_reconciler.models import LedgerHeader, RawEvent
from stellar_reconciler.rpc import StellarRpc

MAX_FILTERS = 5
MAX_CONTRACTS_PER_FILTER = 5
MAX_EVENTS_PAGE = 10000
MAX_LEDGERS_PAGE = 200
# A getLedgers answer carries each ledger's whole meta (up to ~1 MB on mainnet); pages are
# sized so one answer stays near this many bytes of base64.
LEDGER_PAGE_BUDGET_BYTES = 4 * 1024 * 1024


def build_filter_sets(
    contract_ids: Sequence[str], topics: Sequence[Sequence[str]]
) -> list[list[dict[str, Any]]]:
    """Split the configured contracts and topic filters into getEvents filter lists that respect
    the server's limits (5 filters per call, 5 contract ids per filter).

    Returns one filter list per call stream; `[[]]` (one stream, no filters) means everything.
    """
    topic_list = [list(t) for t in topics]
    if len(topic_list) > MAX_FILTERS:
        raise ValueError("at most 5 topic filters are supported")
    filters: list[dict[str, Any]] = []
    if contract_ids:
        for i in range(0, len(contract_ids), MAX_CONTRACTS_PER_FILTER):
            one: dict[str, Any] = {
                "contractIds": list(contract_ids[i : i + MAX_CONTRACTS_PER_FILTER])
            }
            if topic_list:
                one["topics"] = topic_list
            filters.append(one)
    elif topic_list:
        filters.append({"topics": topic_list})
    if not filters:
        return [[]]
    return [filters[i : i + MAX_FILTERS] for i in range(0, len(filters), MAX_FILTERS)]


@dataclass
class _Stream:
    """One cursor-following getEvents stream for one filter list."""

    filters: list[dict[str, Any]]
    next_ledger: int = 0
    cursor: str | None = None
    # Every event at or below this ledger has been fetched.
    scanned_through: int = 0
    buffer: deque[RawEvent] = field(default_factory=deque)

    def reset(self, next_ledger: int) -> None:
        self.next_ledger = next_ledger
        self.cursor = None
        self.scanned_through = next_ledger - 1
        self.buffer.clear()


class EventPager:
    """Hands out every event of consecutive ledger ranges, exactly once, in id order."""

    def __init__(
        self,
        rpc: StellarRpc,
        filter_sets: list[list[dict[str, Any]]],
        page_limit: int = MAX_EVENTS_PAGE,
    ) -> None:
        if not 1 <= page_limit <= MAX_EVENTS_PAGE:
            raise ValueError("page_limit must be 1..10000")
        self._rpc = rpc
        self._streams = [_Stream(filters) for filters in filter_sets]
        self._page_limit = page_limit

    def reset(self, next_ledger: int) -> None:
        """Start over at `next_ledger` (after a restart, a failure or a rescan)."""
        for stream in self._streams:
            stream.reset(next_ledger)

    @property
    def next_ledger(self) -> int:
        return self._streams[0].next_ledger

    async def take(
        self, last_ledger: int, max_events: int | None = None
    ) -> tuple[list[RawEvent], int]:
        """Every event from the current position through `last_ledger`.

        With `max_events`, stops early at a ledger boundary once that many events are in hand
        and returns the ledger the events are complete through (never below the first ledger).
        """
        first = self.next_ledger
        if last_ledger < first:
            return [], first - 1
        through = last_ledger
        per_stream: list[list[RawEvent]] = []
        for stream in self._streams:
            await self._fill(stream, through, max_events)
            through = min(through, max(stream.scanned_through, first))
        for stream in self._streams:
            taken: list[RawEvent] = []
            while stream.buffer and stream.buffer[0].ledger <= through:
                taken.append(stream.buffer.popleft())
            per_stream.append(taken)
            stream.next_ledger = through + 1
        if len(per_stream) == 1:
            return per_stream[0], through
        merged: list[RawEvent] = []
        seen: set[str] = set()
        for event in heapq.merge(*per_stream, key=lambda e: e.id):
            if event.id not in seen:
                seen.add(event.id)
                merged.append(event)
        return merged, through

    async def _fill(self, stream: _Stream, last_ledger: int, max_events: int | None) -> None:
        while stream.scanned_through < last_ledger:
            if (
                max_events is not None
                and len(stream.buffer) >= max_events
                and stream.scanned_through >= stream.next_ledger
            ):
                # Enough for one batch: cut at the last ledger we have completely.
                return
            if stream.cursor is None:
                page = await self._rpc.get_events(
                    start_ledger=stream.next_ledger,
                    end_ledger=last_ledger + 1,
                    filters=stream.filters,
                    limit=self._page_limit,
                )
            else:
                page = await self._rpc.get_events(
                    cursor=stream.cursor, filters=stream.filters, limit=self._page_limit
                )
            events = page.events
            for previous, event in itertools.pairwise(events):
                if event.id <= previous.id:
                    raise RpcProtocolError("getEvents", f"events out of order at {event.id}")
            if stream.buffer and events and events[0].id <= stream.buffer[-1].id:
                raise RpcProtocolError("getEvents", f"page repeats events from {events[0].id}")
            if len(events) >= self._page_limit:
                # A full page may stop inside a ledger: only the ledgers before the last
                # event's ledger are known to be complete.
                scanned = events[-1].ledger - 1
            else:
                scanned = ledger_of_cursor(page.cursor)
            if scanned <= stream.scanned_through and not events:
                # Behind a load balancer, a node that lags the others can answer with a range
                # that ends before ours; that passes, so try again later.
                raise RpcTransientError(
                    "getEvents",
                    f"no progress past ledger {stream.scanned_through} "
                    f"(node's latest ledger is {page.tip.latest_ledger})",
                )
            stream.cursor = page.cursor
            stream.scanned_through = max(stream.scanned_through, scanned)
            stream.buffer.extend(events)


class LedgerPager:
    """Fetches ledger headers for a range, sizing pages to the meta the server sends."""

    def __init__(self, rpc: StellarRpc, budget_bytes: int = LEDGER_PAGE_BUDGET_BYTES) -> None:
        self._rpc = rpc
        self._budget = budget_bytes
        # Start small until we have seen how large this network's metas are.
        self._avg_meta = 64 * 1024.0

    def page_limit(self) -> int:
        return max(1, min(MAX_LEDGERS_PAGE, int(self._budget // max(self._avg_meta, 1.0))))

    async def headers(self, first: int, last: int) -> list[LedgerHeader]:
        """Headers of ledgers first..last inclusive, each hash-verified, in order."""
        out: list[LedgerHeader] = []
        next_ledger = first
        while next_ledger <= last:
            limit = min(self.page_limit(), last - next_ledger + 1)
            page = await self._rpc.get_ledgers(next_ledger, limit=limit)
            wanted = [h for h in page.ledgers if next_ledger <= h.sequence <= last]
            if not wanted:
                raise RpcTransientError(
                    "getLedgers",
                    f"no ledgers from {next_ledger} (node's latest is {page.tip.latest_ledger})",
                )
            for header in wanted:
                if header.sequence != next_ledger:
                    raise RpcProtocolError(
                        "getLedgers", f"expected ledger {next_ledger}, got {header.sequence}"
                    )
                out.append(header)
                next_ledger += 1
            page_bytes = sum(h.meta_size for h in wanted)
            self._avg_meta = 0.5 * self._avg_meta + 0.5 * (page_bytes / len(wanted))
        return out
