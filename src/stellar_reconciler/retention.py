"""RetentionGaps: what the worker does when the next ledger is older than the RPC keeps.

Without a lake it stops advancing and reports the exact run lost, and how to accept it.

With LAKE_URL set it reads gap.first..gap.last (up to the RPC's oldest ledger) from the lake
through the worker's own batch pipeline and commit path (checkpoint compare-and-set, hash
chain from the stored checkpoint), then the next poll goes back to the RPC, whose first
batch must chain to the lake's last ledger: the seam is checked like any other batch
boundary, so nothing there is written twice or left out. A retention_gap already open for
the filled ledgers is resolved, saying where they came from.

A lake that fails (unreachable, an object missing or corrupt, another network, hashes that do
not chain) leaves the gap reported, with the failing object's key in health and in the
discrepancy's message; the next poll tries again. Batches committed before the failure stay:
they chain to the stored history.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from stellar_reconciler.errors import LakeError
from stellar_reconciler.fetcher import BatchSizing, BatchSource
from stellar_reconciler.lake_source import LakeConfig, LakeSource
from stellar_reconciler.metrics import Metrics
from stellar_reconciler.models import BlockKind, NetworkInfo
from stellar_reconciler.plan import Blocked
from stellar_reconciler.status import ServiceStatus
from stellar_reconciler.store import Store

log = structlog.get_logger("stellar_reconciler.retention")

# How a resolved retention_gap names where its ledgers came from.
LAKE_SOURCE_NAME = "the data lake (LAKE_URL)"
ACKNOWLEDGE_COMMAND = "reconciler acknowledge-gap --through-oldest"

# The worker's own pipeline: commit first..last from a source, batch by batch.
Follow = Callable[[BatchSource, int, int], Awaitable[None]]


class RetentionGaps:
    def __init__(
        self,
        store: Store,
        status: ServiceStatus,
        metrics: Metrics,
        lake: LakeConfig | None,
        sizing: BatchSizing,
    ) -> None:
        self.store = store
        self.status = status
        self.metrics = metrics
        self.lake = lake
        self.sizing = sizing
        self._source: LakeSource | None = None
        self._passphrase: str | None = None
        # The last lake failure logged: a lake that stays broken is logged once, not each poll.
        self._last_failure: str | None = None

    async def meet(self, gap: Blocked, network: NetworkInfo | None, follow: Follow) -> None:
        """Fill the gap from the lake when there is one (health unblocked once done), else
        report it and wait."""
        if self.lake is None or network is None:
            await self.report(gap)
            return
        lake_error = await self.fill(gap, network.passphrase, follow)
        if lake_error is None:
            self.status.unblock(BlockKind.RETENTION_GAP)
            return
        # The batches before the failing object are committed: what is lost starts after them
        # (and a consent must name that ledger).
        checkpoint = (await asyncio.to_thread(self.store.checkpoint)).ledger
        if checkpoint is not None and gap.first <= checkpoint < gap.last:
            gap = dataclasses.replace(gap, first=checkpoint + 1)
        await self.report(gap, lake_error)

    def source(self, passphrase: str) -> LakeSource:
        """The lake of `passphrase`'s network, opened once (its configuration read once)."""
        assert self.lake is not None
        if self._source is None or self._passphrase != passphrase:
            lake = self.lake.open(passphrase)
            self._source = LakeSource(lake, self.lake.selector, self.sizing)
            self._passphrase = passphrase
        return self._source

    async def fill(self, gap: Blocked, passphrase: str, follow: Follow) -> LakeError | None:
        """Index gap.first..gap.last from the lake; the error that stopped it, if any."""
        try:
            await follow(self.source(passphrase), gap.first, gap.last)
        except LakeError as exc:
            self.metrics.processing_errors.labels(kind="lake").inc()
            if str(exc) != self._last_failure:
                self._last_failure = str(exc)
                log.error(
                    "lake_fill_failed", first=gap.first, last=gap.last, key=exc.key, error=str(exc)
                )
            return exc
        self._last_failure = None
        resolved = await asyncio.to_thread(self.store.gaps.resolve_filled, LAKE_SOURCE_NAME)
        log.info("lake_fill_done", first=gap.first, last=gap.last, resolved=resolved)
        return None

    async def report(self, gap: Blocked, lake_error: LakeError | None = None) -> None:
        """Stop advancing and say exactly what is lost, why, and how to accept it."""
        detail: dict[str, Any] = {
            "first_missing_ledger": gap.first,
            "last_missing_ledger": gap.last,
            "oldest_available_ledger": gap.oldest_available,
            "command": ACKNOWLEDGE_COMMAND,
        }
        if lake_error is None:
            reason = (
                f"ledgers {gap.first}-{gap.last} are older than the RPC's retention window "
                f"(oldest available: {gap.oldest_available}) and cannot be indexed; set LAKE_URL "
                "to read them from a SEP-54 data lake, index them from an archive RPC, or "
                f"accept them as lost and continue: {ACKNOWLEDGE_COMMAND}"
            )
        else:
            detail["lake_object"] = lake_error.key
            reason = (
                f"ledgers {gap.first}-{gap.last} are older than the RPC's retention window "
                f"(oldest available: {gap.oldest_available}) and the data lake could not supply "
                f"them: {lake_error}. Fix the lake (LAKE_URL), or accept them as lost and "
                f"continue: {ACKNOWLEDGE_COMMAND}"
            )
        opened = await asyncio.to_thread(
            self.store.gaps.report_retention_gap, gap.first, gap.last, reason
        )
        if opened:
            log.error("retention_gap", **detail)
            self.metrics.processing_errors.labels(kind="retention_gap").inc()
        self.status.block(reason, detail, BlockKind.RETENTION_GAP)
