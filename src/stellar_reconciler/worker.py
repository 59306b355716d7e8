"""Worker: follows the ledger from the checkpoint to the network's tip, batch by batch.

While one batch is written, the next is already being fetched and decoded (a queue of two
sits between them), so catch-up runs at the pace of the slower side instead of their sum.
Each batch is committed whole (see Store.commit_batch); after any failure the worker
starts again from the checkpoint, the only state that survives.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from stellar_reconciler.config import Settings, redact_url
from stellar_reconciler.errors import (
    DatabaseUnavailableError,
    LedgerOutOfRangeError,
    ReconcilerError,
    RpcError,
    RpcProtocolError,
    RpcRequestError,
    RpcTransientError,
)
from stellar_reconciler.fetch_process import FetchConfig, FetchProcess
from stellar_reconciler.fetcher import (
    MAX_BATCH_LEDGERS,
    TARGET_BATCH_EVENTS,
    BatchSizer,
    ChainBreakError,
    RangeFetcher,
    first_error,
    follow_range,
)
from stellar_reconciler.metrics import Metrics
from stellar_reconciler.models import Batch, NetworkInfo, NetworkTip
from stellar_reconciler.pager import build_filter_sets
from stellar_reconciler.rpc import StellarRpc
from stellar_reconciler.status import ServiceStatus
from stellar_reconciler.store import BatchHook, Store
from stellar_reconciler.store.discrepancies import NewDiscrepancy

log = structlog.get_logger("stellar_reconciler.worker")


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    poll_interval: float
    start_ledger: str
    filter_sets: list[list[dict[str, Any]]]
    fingerprint: str
    batch_max_ledgers: int = MAX_BATCH_LEDGERS
    target_batch_events: int = TARGET_BATCH_EVENTS
    # A backlog of at least this many ledgers is fetched by a FetchProcess (None: never).
    process_fetch: FetchConfig | None = None
    process_fetch_min_ledgers: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerOptions:
        filter_sets = build_filter_sets(settings.contract_ids, settings.event_topics)
        identity = json.dumps(
            {"contracts": sorted(settings.contract_ids), "topics": settings.event_topics},
            sort_keys=True,
        )
        return cls(
            poll_interval=settings.poll_interval_secs,
            start_ledger=settings.start_ledger,
            filter_sets=filter_sets,
            fingerprint=hashlib.sha256(identity.encode()).hexdigest()[:32],
            batch_max_ledgers=settings.batch_max_ledgers,
            process_fetch=FetchConfig.from_settings(settings, filter_sets)
            if settings.catch_up_process_ledgers
            else None,
            process_fetch_min_ledgers=settings.catch_up_process_ledgers,
        )


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds`; True when the stop event fired."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0))
    except TimeoutError:
        return stop.is_set()
    return True


class Worker:
    """The follower loop. Owns nothing that must survive it: the checkpoint lives in the store."""

    def __init__(
        self,
        rpc: StellarRpc,
        store: Store,
        status: ServiceStatus,
        metrics: Metrics,
        options: WorkerOptions,
        batch_hooks: Sequence[BatchHook] = (),
    ) -> None:
        self.batch_hooks = tuple(batch_hooks)
        self.rpc = rpc
        self.store = store
        self.status = status
        self.metrics = metrics
        self.options = options
        self.fetcher = RangeFetcher(rpc, options.filter_sets)
        self.process_fetcher = (
            FetchProcess(options.process_fetch, metrics) if options.process_fetch else None
        )
        self.sizer = BatchSizer(options.batch_max_ledgers, options.target_batch_events)
        self._checkpoint: int | None = None
        self._last_hash: str | None = None

    # --- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Poll and catch up until `stop` is set; return early only on a fault that cannot be
        retried (health then stays degraded with the reason and what to do)."""
        self.status.worker_running = True
        try:
            while not stop.is_set():
                try:
                    await self._cycle(stop)
                except (RpcTransientError, LedgerOutOfRangeError, DatabaseUnavailableError) as exc:
                    # An out-of-range answer means the window slid or a node lags; the next
                    # poll's getHealth tells which, and a real retention gap is reported then.
                    # A database that went away is waited out the same way.
                    self._transient(exc)
                except (RpcError, ReconcilerError) as exc:
                    await self._halt(exc)
                    return
                except Exception as exc:
                    # A bug must not take the HTTP server down with it: /health turns 503 with
                    # the error, the traceback goes to the log, and the loop stops here.
                    log.exception("worker_crashed", checkpoint=self._checkpoint)
                    await self._halt(ReconcilerError(f"{type(exc).__name__}: {exc}"))
                    return
                if not stop.is_set():
                    await sleep_or_stop(stop, self.options.poll_interval)
        finally:
            self.status.worker_running = False
            if self.process_fetcher is not None:
                self.process_fetcher.close()

    async def _cycle(self, stop: asyncio.Event) -> None:
        if self.status.paused:
            return
        tip = await self.rpc.get_health()
        self.status.observe_tip(tip)
        if self.status.network is None:
            self.status.network = await self._network()
        if self._checkpoint is None:
            start = self._start_ledger(tip)
            self._checkpoint = await asyncio.to_thread(
                self.store.ensure_stream, start, self.options.fingerprint
            )
            self.status.last_processed_ledger = self._checkpoint
            self.status.record_progress(self._checkpoint)
            log.info("stream_ready", checkpoint=self._checkpoint, start_ledger=start)
        else:
            # The checkpoint may move outside this loop (an acknowledged gap); re-read it.
            stored = (await asyncio.to_thread(self.store.checkpoint)).ledger
            if stored is not None and stored != self._checkpoint:
                self._checkpoint, self._last_hash = stored, None
                self.status.last_processed_ledger = stored
        next_ledger = self._checkpoint + 1
        # "oldest" means the oldest ledger at the first commit: the window slides one ledger
        # per close, and nothing has been promised while the database is empty.
        if (
            next_ledger < tip.oldest_ledger
            and self.options.start_ledger == "oldest"
            and await asyncio.to_thread(
                self.store.rebase_empty_stream, self._checkpoint, tip.oldest_ledger - 1
            )
        ):
            self._checkpoint = tip.oldest_ledger - 1
            next_ledger = tip.oldest_ledger
        if next_ledger < tip.oldest_ledger:
            consent = await asyncio.to_thread(self.store.gaps.pending_consent)
            if consent is None or (
                consent.through_ledger is not None and consent.through_ledger < next_ledger
            ):
                await asyncio.to_thread(self._retention_gap, next_ledger, tip)
                return
            skip_to = tip.oldest_ledger - 1
            if consent.through_ledger is not None:
                skip_to = min(skip_to, consent.through_ledger)
            await asyncio.to_thread(self.store.gaps.acknowledge, next_ledger, skip_to, consent)
            log.warning(
                "gap_acknowledged", first=next_ledger, last=skip_to, by=consent.requested_by
            )
            self._checkpoint, self._last_hash = skip_to, None
            self.status.last_processed_ledger = skip_to
            next_ledger = skip_to + 1
            if next_ledger < tip.oldest_ledger:
                await asyncio.to_thread(self._retention_gap, next_ledger, tip)
                return
        if (
            self.status.blocking_reason
            and self.status.blocking_detail is not None
            and (self.status.blocking_detail.get("kind") == "retention_gap")
        ):
            self.status.unblock()
        if next_ledger > tip.latest_ledger:
            self.status.record_idle_success()
            return
        await self._catch_up(tip, stop)

    async def _network(self) -> NetworkInfo:
        """The network's passphrase and protocol: shown to operators, never needed to index,
        so a node that does not answer getNetwork does not stop the worker."""
        try:
            info = await self.rpc.get_network()
        except (RpcRequestError, RpcProtocolError) as exc:
            log.warning("network_unknown", error=str(exc))
            # A network passphrase is public, not a secret.
            return NetworkInfo(passphrase="unknown (getNetwork failed)", protocol_version=0)  # noqa: S106
        # Start-up records it when the RPC answers then; otherwise here, before the first batch
        # (NetworkMismatchError halts the worker: the database holds another network's data).
        await asyncio.to_thread(
            self.store.network.record, info.passphrase, redact_url(self.rpc.url)
        )
        return info

    def _start_ledger(self, tip: NetworkTip) -> int:
        choice = self.options.start_ledger
        if choice == "oldest":
            return tip.oldest_ledger
        if choice == "latest":
            return tip.latest_ledger
        return int(choice)

    # --- catching up ---------------------------------------------------------------------

    async def _catch_up(self, tip: NetworkTip, stop: asyncio.Event) -> None:
        assert self._checkpoint is not None
        if self._last_hash is None:
            stored = await asyncio.to_thread(self.store.ledger, self._checkpoint)
            self._last_hash = stored.hash if stored else None
        batches = self._batches(self._checkpoint + 1, tip.latest_ledger)
        queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=1)
        fetch_error: list[BaseException] = []
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._produce(batches, queue, stop, fetch_error))
                group.create_task(self._consume(queue))
        except BaseExceptionGroup as group_error:
            raise first_error(group_error) from None
        finally:
            await batches.aclose()
        if fetch_error:
            # Raised only now, after every batch fetched before the failure was committed.
            raise fetch_error[0]

    def _batches(self, first: int, target: int) -> AsyncGenerator[Batch, None]:
        """The batches from `first` to `target`. A long backlog is fetched by a second process,
        so writing gets a core of its own; a short one is not worth the hand-over (and
        following the tip stays in-process)."""
        max_events = 2 * self.options.target_batch_events
        process = self.process_fetcher
        if process is not None and not process.trusted:
            log.warning(
                "fetch_process_abandoned",
                losses=process.losses,
                hint="catching up in one process; see the fetch_process errors above",
            )
            self.process_fetcher = process = None
        if process is not None and target - first + 1 >= self.options.process_fetch_min_ledgers:
            return process.follow(
                first,
                target,
                self._last_hash,
                self.options.batch_max_ledgers,
                self.options.target_batch_events,
                max_events,
            )
        if process is not None:
            # Caught up: the child's memory is better given back until the next long backlog.
            process.close()
        return follow_range(self.fetcher, self.sizer, first, target, self._last_hash, max_events)

    async def _produce(
        self,
        batches: AsyncIterator[Batch],
        queue: asyncio.Queue[Batch | None],
        stop: asyncio.Event,
        fetch_error: list[BaseException],
    ) -> None:
        try:
            async for batch in batches:
                await queue.put(batch)
                if stop.is_set() or self.status.paused:
                    break
        except ChainBreakError as exc:
            if exc.valid_prefix is not None:
                # Commit what chains to the stored history, then halt at the break.
                await queue.put(exc.valid_prefix)
            fetch_error.append(exc)
        except (RpcError, ReconcilerError) as exc:
            fetch_error.append(exc)
        # The consumer must learn that nothing more is coming, failure or not.
        await queue.put(None)

    async def _consume(self, queue: asyncio.Queue[Batch | None]) -> None:
        while (batch := await queue.get()) is not None:
            started = time.perf_counter()
            # Shielded: once a batch is handed to the database it commits or rolls back whole,
            # even when shutdown cancels the loop around it.
            await asyncio.shield(
                asyncio.to_thread(self.store.commit_batch, batch, self.batch_hooks)
            )
            self._committed(batch, time.perf_counter() - started)

    def _committed(self, batch: Batch, duration: float) -> None:
        self._checkpoint = batch.last_ledger
        self._last_hash = batch.ledgers[-1].hash
        ledgers = len(batch.ledgers)
        self.metrics.processed_ledgers.inc(ledgers)
        self.metrics.events_indexed.inc(len(batch.events))
        self.metrics.batch_duration.observe(duration)
        self.metrics.batch_ledgers.observe(ledgers)
        self.metrics.checkpoint_ledger.set(batch.last_ledger)
        self.status.record_progress(batch.last_ledger)
        log.info(
            "batch_committed",
            first=batch.first_ledger,
            last=batch.last_ledger,
            ledgers=ledgers,
            events=len(batch.events),
            duration_ms=round(duration * 1000, 1),
        )

    # --- failures ------------------------------------------------------------------------

    def _retention_gap(self, next_ledger: int, tip: NetworkTip) -> None:
        """Stop advancing and say exactly what is lost and how to accept it (runs in a thread)."""
        last_missing = tip.oldest_ledger - 1
        command = "reconciler acknowledge-gap --through-oldest"
        detail = {
            "kind": "retention_gap",
            "first_missing_ledger": next_ledger,
            "last_missing_ledger": last_missing,
            "oldest_available_ledger": tip.oldest_ledger,
            "command": command,
        }
        reason = (
            f"ledgers {next_ledger}-{last_missing} are older than the RPC's retention window "
            f"(oldest available: {tip.oldest_ledger}) and cannot be indexed; index them from an "
            f"archive RPC, or accept them as lost and continue: {command}"
        )
        _, opened = self.store.discrepancies.open(
            NewDiscrepancy(
                kind="retention_gap",
                # Keyed on where the worker stopped: the range's end slides with the window.
                key=f"retention_gap:checkpoint:{next_ledger}",
                message=reason,
                first_ledger=next_ledger,
                last_ledger=last_missing,
                expected={"next_ledger": next_ledger},
                found={"oldest_available_ledger": tip.oldest_ledger},
            )
        )
        if opened:
            log.error("retention_gap", **{k: v for k, v in detail.items() if k != "kind"})
            self.metrics.processing_errors.labels(kind="retention_gap").inc()
        self.status.block(reason, detail)

    def _transient(self, exc: ReconcilerError) -> None:
        kind = "database" if isinstance(exc, DatabaseUnavailableError) else "rpc_transient"
        self.metrics.processing_errors.labels(kind=kind).inc()
        self.status.record_poll_failure(str(exc))
        log.warning("poll_failed", error=str(exc), checkpoint=self._checkpoint)

    async def _halt(self, exc: ReconcilerError) -> None:
        if isinstance(exc, ChainBreakError):
            await asyncio.to_thread(self._record_chain_break, exc)
        kind = type(exc).__name__
        self.metrics.processing_errors.labels(kind=kind).inc()
        reason = f"worker stopped: {exc}"
        self.status.block(reason, {"kind": "halted", "error": kind})
        log.error("worker_halted", error=str(exc), kind=kind, checkpoint=self._checkpoint)

    def _record_chain_break(self, exc: ChainBreakError) -> None:
        try:
            self.store.discrepancies.open(
                NewDiscrepancy(
                    kind="chain_break",
                    key=f"chain_break:{exc.sequence}",
                    message=str(exc),
                    first_ledger=exc.sequence,
                    last_ledger=exc.sequence,
                    expected={"previous_hash": exc.expected, "ledger": exc.sequence - 1},
                    found={"previous_hash": exc.found, "ledger": exc.sequence},
                )
            )
        except DatabaseUnavailableError:
            # The halt itself (health 503 with both hashes) still stands; the log has it too.
            log.exception("chain_break_not_recorded", ledger=exc.sequence)
