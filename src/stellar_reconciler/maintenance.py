"""Maintenance: proves the stored history whole and true, and repairs what it can by itself.

Runs beside the worker, on ledgers already behind the checkpoint (so the two never write the
same rows): re-verifies stored ranges against a fresh read of the RPC, has gaps filled
(gap_repair.py), and runs the rescans, backfills and verifications operators ask for.
Every finding is a discrepancy record; repairs are one transaction per batch, each a named
operation of the store (replace_range, fill_gap).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from stellar_reconciler.backfill import Backfill
from stellar_reconciler.backfill_chunks import ChunkedBackfill
from stellar_reconciler.config import Settings
from stellar_reconciler.control import Controls, Job
from stellar_reconciler.crosscheck import Against, CrossCheck, LakeSource, raw_fingerprint
from stellar_reconciler.errors import (
    ReconcilerError,
)
from stellar_reconciler.fetcher import RangeFetcher
from stellar_reconciler.gap_repair import GapRepair
from stellar_reconciler.metrics import Metrics
from stellar_reconciler.models import Batch
from stellar_reconciler.reconcile import (
    Comparison,
    compare_ranges,
    split_range,
)
from stellar_reconciler.rpc import StellarRpc
from stellar_reconciler.status import SYNCED_LAG, ServiceStatus
from stellar_reconciler.store import BLOCKING_KINDS, BatchHook, NewDiscrepancy, Store
from stellar_reconciler.verify_report import VerifyReport

log = structlog.get_logger("stellar_reconciler.maintenance")

VERIFIED_MARKER = "verified"
# Look for gaps every this many idle ticks (the query scans the ledgers index).
GAP_CHECK_EVERY_TICKS = 30
# At most this many periodic ranges are verified in one go when verification is behind.
MAX_RANGES_PER_TICK = 16
# Ledgers compared at once when only the lake is asked (the RPC's batches set it otherwise).
LAKE_ONLY_SPAN = 1000


class Maintenance:
    def __init__(
        self,
        rpc: StellarRpc,
        store: Store,
        status: ServiceStatus,
        metrics: Metrics,
        controls: Controls,
        filter_sets: list[list[dict[str, Any]]],
        verify_every: int,
        tick_seconds: float = 1.0,
        batch_hooks: Sequence[BatchHook] = (),
        lake: LakeSource | None = None,
        backfill: Backfill | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.rpc = rpc
        self.store = store
        self.status = status
        self.metrics = metrics
        self.controls = controls
        self.filter_sets = filter_sets
        self.verify_every = verify_every
        self.tick_seconds = tick_seconds
        self.batch_hooks = tuple(batch_hooks)
        self.crosscheck = CrossCheck(store, lake, status)
        self.backfill = backfill
        # Backfill jobs run in chunks (queued on PostgreSQL) when the settings are given.
        self.settings = settings
        self._ticks = 0
        self.gaps = GapRepair(
            rpc,
            store,
            filter_sets,
            self.batch_hooks,
            backfill,
            settings,
            lake_retry_seconds=GAP_CHECK_EVERY_TICKS * tick_seconds,
        )

    # --- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run jobs as they come and periodic checks between them, until `stop`."""
        await asyncio.to_thread(self.refresh_health)
        while not stop.is_set():
            job = await self._next_job(stop)
            try:
                if job is not None:
                    await self.run_job(job)
                else:
                    await self.tick()
            except ReconcilerError as exc:
                # The next tick tries again; a failed check never changes stored data.
                log.warning("maintenance_failed", error=str(exc))
                self.status.record_error(f"maintenance: {exc}")

    async def _next_job(self, stop: asyncio.Event) -> Job | None:
        getter = asyncio.ensure_future(self.controls.next_job())
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait(
            {getter, stopper}, timeout=self.tick_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        stopper.cancel()
        if getter in done:
            return getter.result()
        getter.cancel()
        return None

    async def tick(self) -> None:
        self._ticks += 1
        await asyncio.to_thread(self.refresh_health)
        tip = self.status.tip
        if tip is None or self.status.last_processed_ledger is None:
            return
        if self._ticks % GAP_CHECK_EVERY_TICKS == 1:
            await self.gaps.repair(tip, scheduled=True)
        lag = self.status.ledger_lag or 0
        # Verification doubles what is read from the RPC; while catching up, catching up wins.
        if self.verify_every and lag <= SYNCED_LAG and not self.status.paused:
            await self.verify_due()

    def refresh_health(self) -> None:
        """Open chain breaks and source mismatches make health 503; export counts by kind,
        and the backfill chunks by state."""
        counts = self.store.discrepancies.open_counts()
        self.metrics.set_discrepancy_counts(counts)
        self.metrics.set_backfill(*self.store.chunks.totals())
        conditions = {
            kind: f"{counts[kind]} open {kind} discrepancies: see /api/discrepancies?kind={kind}"
            for kind in sorted(BLOCKING_KINDS)
            if counts.get(kind)
        }
        self.status.set_unhealthy_conditions(conditions)

    # --- jobs ----------------------------------------------------------------------------

    async def run_job(self, job: Job) -> None:
        job.state, job.started_at = "running", datetime.now(UTC)
        self.status.notify()
        log.info(
            "job_started", job=job.id, kind=job.kind, first=job.first_ledger, last=job.last_ledger
        )
        try:
            if job.kind == "rescan":
                job.result = await self.rescan(job.first_ledger, job.last_ledger, job)
            elif job.kind == "backfill":
                job.result = await self.run_backfill(job)
            else:
                tip = self.status.tip or await self.rpc.get_health()
                report = await self.gaps.repair(tip, job.first_ledger, job.last_ledger)
                report = await self.verify(job.first_ledger, job.last_ledger, job, report)
                job.result = report.as_json()
            job.state = "done"
            job.done_ledgers = job.total_ledgers
        except ReconcilerError as exc:
            job.state, job.error = "failed", str(exc)
            log.warning("job_failed", job=job.id, error=str(exc))
        finally:
            job.finished_at = datetime.now(UTC)
            await asyncio.to_thread(self.refresh_health)
            self.status.notify()
            log.info("job_finished", job=job.id, state=job.state)

    async def rescan(self, first: int, last: int, job: Job | None = None) -> dict[str, Any]:
        """Re-index first..last from the RPC, one transaction per batch, whatever was stored."""
        fetcher = RangeFetcher(self.rpc, self.filter_sets)
        events = 0
        async for batch in fetcher.batches(first, last, previous_hash=None):
            await asyncio.to_thread(self.store.replace_range, batch, self.batch_hooks)
            events += len(batch.events)
            if job is not None:
                job.done_ledgers = batch.last_ledger - first + 1
                self.status.notify()
        return {"ledgers": last - first + 1, "events": events}

    async def run_backfill(self, job: Job) -> dict[str, Any]:
        """Fill what is missing of the job's range (reconciler backfill's work): in chunks,
        queued for every backfill-worker on PostgreSQL and worked on here too, its progress
        the ledgers of the chunks done; without settings, batch by batch, ledgers already
        stored counting as done."""
        if self.backfill is None:
            raise ReconcilerError("backfill jobs need the service's backfill (not configured)")
        first, last = job.first_ledger, job.last_ledger
        if self.settings is not None:

            def chunks_done(done: int, _total: int) -> None:
                job.done_ledgers = done
                self.status.notify()

            chunked = ChunkedBackfill(
                self.settings, self.backfill, self.batch_hooks, requested_by=job.requested_by
            )
            return await chunked.run(first, last, chunks_done)

        def advance(done: int, missing: int) -> None:
            job.done_ledgers = last - first + 1 - missing + done
            self.status.notify()

        report = await self.backfill.run(first, last, advance, self.batch_hooks)
        return report.as_json()

    # --- re-verification -----------------------------------------------------------------

    async def verify_due(self) -> None:
        """Verify the next ranges of VERIFY_EVERY_LEDGERS ledgers the checkpoint has passed."""
        checkpoint = self.status.last_processed_ledger or 0
        verified = await asyncio.to_thread(self.store.marker, VERIFIED_MARKER)
        if verified is None:
            first_stored = (await asyncio.to_thread(self.store.ledger_bounds))[0]
            if first_stored is None:
                return
            verified = first_stored - 1
            await asyncio.to_thread(self.store.move_marker, VERIFIED_MARKER, None, verified)
        ranges = 0
        while checkpoint - verified >= self.verify_every and ranges < MAX_RANGES_PER_TICK:
            last = verified + self.verify_every
            await self.verify(verified + 1, last)
            await asyncio.to_thread(self.store.move_marker, VERIFIED_MARKER, verified, last)
            verified, ranges = last, ranges + 1

    async def verify(
        self,
        first: int,
        last: int,
        job: Job | None = None,
        report: VerifyReport | None = None,
        against: Against | None = None,
    ) -> VerifyReport:
        """Re-read first..last and compare it, ledger by ledger, with what is stored; repair
        event differences and prove the repair with a second read. With the lake too (see
        crosscheck), a source outvoted by the other two is named and nothing is repaired from
        it; the store is repaired from the RPC only when the lake sides with the RPC."""
        report = report or VerifyReport(first, last)
        report.against, strict = self.crosscheck.resolve(against)
        if report.against == "lake":
            return await self._verify_with_lake_only(first, last, job, report)
        fetcher = RangeFetcher(self.rpc, self.filter_sets)
        async for fresh in fetcher.batches(first, last, previous_hash=None):
            lake = None
            if report.against == "both":
                span = (fresh.first_ledger, fresh.last_ledger)
                lake = await self.crosscheck.lake_read(*span, strict)
            comparison = await asyncio.to_thread(self._compare, fresh)
            report.ledgers_checked += len(fresh.ledgers)
            if job is not None:
                job.done_ledgers = fresh.last_ledger - first + 1
                self.status.notify()
            if lake is not None:
                # None: the RPC and the lake agree the store is wrong, so repair as ever.
                found = await self.crosscheck.with_rpc(fresh, lake)
                if found is not None:
                    report.source_mismatches += found
                    continue
            if comparison.matches:
                continue
            broken = [d.ledger for d in comparison.diffs if d.stored_hash != d.network_hash]
            if broken:
                await asyncio.to_thread(self._record_rewritten_history, comparison, broken)
                report.chain_breaks.extend(broken)
                continue
            await self._repair(fresh, comparison, report)
        return report

    async def _verify_with_lake_only(
        self, first: int, last: int, job: Job | None, report: VerifyReport
    ) -> VerifyReport:
        """The store against the lake alone: differences are named, nothing is repaired."""
        for a, b in split_range(first, last, LAKE_ONLY_SPAN):
            checked, found = await self.crosscheck.against_lake(a, b)
            report.ledgers_checked += checked
            report.source_mismatches += found
            if job is not None:
                job.done_ledgers = b - first + 1
                self.status.notify()
        return report

    def _compare(self, fresh: Batch) -> Comparison:
        first, last = fresh.first_ledger, fresh.last_ledger
        stored_hashes = self.store.ledger_hashes(first, last)
        # Ledgers missing from the store are gaps, found and filled by gap_repair.
        present = [ledger for ledger in fresh.ledgers if ledger.sequence in stored_hashes]
        network_hashes = {ledger.sequence: ledger.hash for ledger in present}
        network = [raw_fingerprint(e) for e in fresh.events if e.ledger in stored_hashes]
        stored = self.store.fingerprints(first, last)
        return compare_ranges(first, last, stored, network, stored_hashes, network_hashes)

    async def _repair(self, fresh: Batch, comparison: Comparison, report: VerifyReport) -> None:
        span = (fresh.first_ledger, fresh.last_ledger)
        summary = comparison.summary()
        key = f"source_mismatch:{span[0]}-{span[1]}"
        found = {"stored_differs": summary}
        message = (
            f"ledgers {span[0]}-{span[1]} differed from the RPC: {summary['missing']} events "
            f"missing, {summary['unexpected']} not on chain, {summary['changed']} changed"
        )
        discrepancy = NewDiscrepancy(
            kind="source_mismatch",
            key=key,
            message=message,
            first_ledger=span[0],
            last_ledger=span[1],
            expected={"ledgers": len(fresh.ledgers)},
            found=found,
        )
        await asyncio.to_thread(self.store.replace_range, fresh, self.batch_hooks, discrepancy)
        log.warning(
            "source_mismatch_repaired",
            first=span[0],
            last=span[1],
            **{k: summary[k] for k in ("missing", "unexpected", "changed")},
        )
        # A repair holds only if a second, independent read agrees with what we now store.
        second = await RangeFetcher(self.rpc, self.filter_sets).fetch(
            span[0], span[1], previous_hash=None, max_events=None
        )
        if (await asyncio.to_thread(self._compare, second)).matches:
            await asyncio.to_thread(
                self.store.discrepancies.resolve_key,
                key,
                "auto",
                f"re-indexed ledgers {span[0]}-{span[1]} from the RPC in one transaction; a "
                "second read matched what is now stored",
            )
            report.repaired.append(span)
        else:
            report.unrepaired.append(span)
            log.error("source_mismatch_unrepaired", first=span[0], last=span[1])

    def _record_rewritten_history(self, comparison: Comparison, broken: list[int]) -> None:
        for diff in comparison.diffs:
            if diff.ledger not in broken:
                continue
            self.store.discrepancies.open(
                NewDiscrepancy(
                    kind="chain_break",
                    key=f"chain_break:{diff.ledger}",
                    message=(
                        f"ledger {diff.ledger} is stored with hash {diff.stored_hash} but the RPC "
                        f"now serves hash {diff.network_hash}: the network's history differs "
                        "from the indexed one. Nothing was changed; check STELLAR_RPC_URL"
                    ),
                    first_ledger=diff.ledger,
                    last_ledger=diff.ledger,
                    expected={"hash": diff.stored_hash},
                    found={"hash": diff.network_hash},
                )
            )
