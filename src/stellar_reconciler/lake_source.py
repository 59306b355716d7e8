"""LakeSource: the worker's batches read out of a SEP-54 data lake instead of the RPC.

It is a BatchSource like fetcher.InProcessSource: the same Batch shape, the same sizing, the
same previous-hash chain from the stored checkpoint, so Store.commit_batch (checkpoint
compare-and-set, hash chain) stores lake ledgers exactly as it stores the RPC's. Events come
from the ledger metadata as getEvents would serve them (metaevents), filtered by the same
CONTRACT_IDS and EVENT_TOPICS the RPC path asks for.

Every failure is a LakeError naming the object key; a batch that meets one is never handed
over, so nothing of it is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field

from stellar_reconciler.config import Settings
from stellar_reconciler.decode import decode_event
from stellar_reconciler.errors import DecodeError, LakeObjectCorruptError
from stellar_reconciler.fetcher import BatchSizing, build_batch
from stellar_reconciler.lake import Lake, LakeLayout, open_store
from stellar_reconciler.meta_ledger import EventSelector
from stellar_reconciler.models import Batch, Event, LedgerHeader, RawEvent


@dataclass(frozen=True, slots=True)
class LakeConfig:
    """Where the lake is and how to read it (LAKE_URL and friends); opened per network."""

    url: str
    endpoint_url: str = ""
    anonymous: bool = False
    prefetch: int = 4
    selector: EventSelector = field(default_factory=EventSelector)

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeConfig | None:
        """None when LAKE_URL is empty (no lake configured)."""
        if not settings.lake_url:
            return None
        return cls(
            url=settings.lake_url,
            endpoint_url=settings.lake_endpoint_url,
            anonymous=settings.lake_anonymous,
            prefetch=settings.lake_prefetch,
            selector=EventSelector.for_settings(settings),
        )

    def open(self, passphrase: str) -> Lake:
        """The lake, to be read only if its configuration names `passphrase`'s network."""
        return Lake(
            open_store(self.url, self.endpoint_url, self.anonymous), passphrase, self.prefetch
        )


@dataclass(slots=True)
class _Pending:
    """Ledgers read but not yet handed over as a batch."""

    headers: list[LedgerHeader]
    events: list[RawEvent]

    @classmethod
    def empty(cls) -> _Pending:
        return cls([], [])


class LakeSource:
    """A BatchSource over a lake: first..target as consecutive batches, each chained to the
    one before (and the first to the stored checkpoint's hash)."""

    def __init__(self, lake: Lake, selector: EventSelector, sizing: BatchSizing) -> None:
        self.lake = lake
        self.selector = selector
        self.sizing = sizing

    async def follow(
        self, first: int, target: int, previous_hash: str | None
    ) -> AsyncGenerator[Batch, None]:
        """Batches of at most BATCH_MAX_LEDGERS ledgers, cut at a ledger boundary once they
        hold the target number of events, as the RPC sources cut theirs."""
        ledgers = self.lake.ledgers(first, target, previous_hash)
        pending = _Pending.empty()
        start = first
        try:
            async for ledger in ledgers:
                pending.headers.append(ledger.header)
                pending.events.extend(filter(self.selector.selects, ledger.events))
                if (
                    len(pending.headers) >= self.sizing.max_ledgers
                    or len(pending.events) >= self.sizing.target_events
                ):
                    batch = await self._batch(start, pending, previous_hash)
                    previous_hash, start = batch.ledgers[-1].hash, batch.last_ledger + 1
                    pending = _Pending.empty()
                    yield batch
            if pending.headers:
                yield await self._batch(start, pending, previous_hash)
        finally:
            await ledgers.aclose()

    async def _batch(self, first: int, pending: _Pending, previous_hash: str | None) -> Batch:
        layout = await self.lake.layout()
        events = await asyncio.to_thread(_decode_all, pending.events, layout)
        return build_batch(first, pending.headers, events, previous_hash)

    async def close(self) -> None:
        """Nothing held between ranges: each follow opens and closes its own reads."""

    def terminate(self) -> None:
        """Nothing to end: reads run on the caller's event loop."""


def _decode_all(raw_events: Sequence[RawEvent], layout: LakeLayout) -> list[Event]:
    decoded = []
    for raw in raw_events:
        try:
            decoded.append(decode_event(raw))
        except DecodeError as exc:
            key = layout.batch_key(raw.ledger)
            raise LakeObjectCorruptError(
                key, f"holds an event of ledger {raw.ledger} that does not decode: {exc}"
            ) from exc
    return decoded
