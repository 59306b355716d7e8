"""A backfill cut into chunks: each written whole in one transaction, then stitched by hash.

`reconciler backfill` and POST /api/backfills cut their range into chunks of
BACKFILL_CHUNK_LEDGERS ledgers (store/chunks.py keeps them). On PostgreSQL every chunk is a
job of the queue (backfill_queue.py) that any `reconciler backfill-worker` may take, the
process that asked working too; on SQLite the same ChunkWriter runs them in order, in one
process, with no queue. A chunk writes what is missing of it (from the lake where the RPC no
longer keeps it, from the RPC where it does), chained to the stored ledgers on both sides
when they are there; one that does not chain, or whose lake object is bad, writes nothing and
says which ledger or object. The stitch checks that neighbouring chunks chain, which two
workers writing side by side could not see of each other, and moves the run's "verified
contiguous through" mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

import structlog

from stellar_reconciler.backfill import Backfill
from stellar_reconciler.config import Settings
from stellar_reconciler.errors import (
    BackfillChunksFailedError,
    BackfillRangeError,
    ChainBreakError,
    DatabaseUnavailableError,
    LakeUnreachableError,
    ReconcilerError,
    RpcTransientError,
)
from stellar_reconciler.models import Batch
from stellar_reconciler.reconcile import Range
from stellar_reconciler.rpc import StellarRpc
from stellar_reconciler.store import BatchHook, NewDiscrepancy, Store
from stellar_reconciler.store.chunks import Chunk, Stitch

log = structlog.get_logger("stellar_reconciler.backfill_chunks")

Progress = Callable[[int, int], None]
# Faults that may pass: the chunk is tried again (by the queue) rather than failed for good.
TRANSIENT = (RpcTransientError, LakeUnreachableError, DatabaseUnavailableError)
# How often a process waiting on its run looks at the chunks (and the queue) again.
POLL_SECS = 0.5
T = TypeVar("T")
Item = TypeVar("Item")


class ChunkWriter:
    """Writes one chunk of a run; see the module's docstring."""

    def __init__(
        self,
        backfill: Backfill,
        hooks: Sequence[BatchHook] = (),
        on_written: Callable[[int, int], None] | None = None,
    ) -> None:
        self.backfill = backfill
        self.store: Store = backfill.store
        self.hooks = tuple(hooks)
        self.on_written = on_written
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    async def run(self, chunk_id: int, last_try: bool = True) -> None:
        """Write the chunk, record it and stitch its run. A transient fault is recorded and
        raised again for the queue to retry (for good only on the `last_try`); any other
        failure is recorded for good, with a chain_break discrepancy when hashes did not
        chain, and raised."""
        chunk = await asyncio.to_thread(self.store.chunks.chunk, chunk_id)
        if chunk is None or chunk.state == "done":
            return
        await asyncio.to_thread(self.store.chunks.start, chunk_id, self.name)
        try:
            written = await self._write(chunk)
        except TRANSIENT as exc:
            await asyncio.to_thread(self.store.chunks.fail, chunk_id, str(exc), last_try)
            log.warning("chunk_fault", chunk=chunk_id, error=str(exc), retried=not last_try)
            raise
        except ChainBreakError as exc:
            await asyncio.to_thread(self._record_break, chunk, exc)
            raise
        except ReconcilerError as exc:
            await asyncio.to_thread(self.store.chunks.fail, chunk_id, str(exc))
            log.error("chunk_failed", chunk=chunk_id, error=str(exc))
            raise
        log.info(
            "chunk_written",
            chunk=chunk_id,
            first=chunk.first_ledger,
            last=chunk.last_ledger,
            ledgers=written[0],
            events=written[1],
        )
        if self.on_written is not None:
            self.on_written(*written)
        await stitch(self.store, chunk.run_id)

    async def _write(self, chunk: Chunk) -> tuple[int, int]:
        backfill = self.backfill
        await backfill.open_sources()
        await backfill.check_behind_checkpoint(chunk.last_ledger)
        missing = await asyncio.to_thread(
            self.store.gaps.missing, chunk.first_ledger, chunk.last_ledger
        )
        plan = await backfill.plan(missing)
        sources: list[list[Any]] = []
        for lake_part, rpc_part in plan:
            sources += [["lake", *lake_part]] if lake_part is not None else []
            sources += [["rpc", *rpc_part]] if rpc_part is not None else []
        batches = _chunk_batches(backfill, missing, plan)
        write = functools.partial(self.store.chunks.write, chunk, sources=sources, hooks=self.hooks)
        if self.store.is_sqlite():
            # SQLite has one write lock for the whole file: a transaction open while the lake
            # and the RPC are read would stall the service's worker for as long. The chunk is
            # read first and held (so BACKFILL_CHUNK_LEDGERS bounds memory here).
            return await asyncio.to_thread(write, [batch async for batch in batches])
        return await write_streamed(write, batches)

    def _record_break(self, chunk: Chunk, exc: ChainBreakError) -> None:
        message = f"backfill chunk {chunk.first_ledger}-{chunk.last_ledger} was not written: {exc}"
        self.store.chunks.fail(chunk.id, message)
        self.store.discrepancies.open(_chain_break(exc.sequence, exc.expected, exc.found, message))
        log.error("chunk_chain_break", chunk=chunk.id, ledger=exc.sequence)


def _chain_break(ledger: int, expected: str | None, found: str | None, message: str) -> Any:
    return NewDiscrepancy(
        kind="chain_break",
        key=f"chain_break:{ledger}",
        message=message,
        first_ledger=ledger,
        last_ledger=ledger,
        expected={"previous_hash": expected},
        found={"previous_hash": found},
    )


async def _chunk_batches(
    backfill: Backfill, missing: list[Range], plan: list[tuple[Range | None, Range | None]]
) -> AsyncGenerator[Batch, None]:
    for (first, last), (lake_part, rpc_part) in zip(missing, plan, strict=True):
        async for batch in backfill.batches(first, last, lake_part, rpc_part):
            yield batch


async def write_streamed(
    write: Callable[[Iterator[Item]], T], batches: AsyncGenerator[Item, None]
) -> T:
    """`write` run in a thread over `batches`, each read on this loop only when `write` asks
    for it: one batch is held at a time, however long the chunk, and its one transaction
    stays open while the rest is read (PostgreSQL's row locks hold up no other writer). A
    batch that cannot be read raises inside `write`, so its transaction rolls back whole; so
    does a cancelled caller, at the next batch `write` asks for."""
    loop = asyncio.get_running_loop()
    abandoned = threading.Event()

    async def next_batch() -> Item | None:
        return await anext(batches, None)

    def pulled() -> Iterator[Item]:
        while True:
            batch = asyncio.run_coroutine_threadsafe(next_batch(), loop).result()
            if abandoned.is_set():
                # The caller's cancellation, carried into the transaction: it rolls back.
                raise asyncio.CancelledError()
            if batch is None:
                return
            yield batch

    writing = asyncio.ensure_future(asyncio.to_thread(write, pulled()))
    try:
        return await asyncio.shield(writing)
    except asyncio.CancelledError:
        abandoned.set()
        # The loop must keep serving the thread's last read until it has rolled back.
        with contextlib.suppress(asyncio.CancelledError):
            await writing
        raise
    finally:
        if writing.done():
            await batches.aclose()


async def stitch(store: Store, run_id: int) -> Stitch:
    """Move the run's mark; two chunks that do not chain open a chain_break naming the ledger."""
    result = await asyncio.to_thread(store.chunks.stitch, run_id)
    if result.broken_at is not None:
        message = (
            f"backfilled ledger {result.broken_at} does not chain: its previous hash is "
            f"{result.found} but ledger {result.broken_at - 1} is stored with hash "
            f"{result.expected}. The backfill is verified contiguous only through "
            f"{result.verified_through}; check LAKE_URL and STELLAR_RPC_URL, then resolve this"
        )
        discrepancy = _chain_break(result.broken_at, result.expected, result.found, message)
        await asyncio.to_thread(store.discrepancies.open, discrepancy)
    return result


class ChunkedBackfill:
    """One backfill run, from plan to report: queued on PostgreSQL, in order on SQLite."""

    def __init__(
        self,
        settings: Settings,
        backfill: Backfill,
        hooks: Sequence[BatchHook] = (),
        requested_by: str = "cli",
        work: bool = True,
    ) -> None:
        self.settings = settings
        self.backfill = backfill
        self.store = backfill.store
        self.writer = ChunkWriter(backfill, hooks)
        self.requested_by = requested_by
        # False: queue the chunks and wait for backfill-workers, writing nothing here.
        self.work = work

    async def run(self, first: int, last: int, progress: Progress | None = None) -> dict[str, Any]:
        """Plan, run (or queue and help run) every chunk, stitch, and report; refuses what a
        backfill may not write or cannot read before planning anything."""
        if first > last:
            raise BackfillRangeError(f"--from {first} is after --to {last}")
        backfill = self.backfill
        await backfill.open_sources()
        await backfill.check_behind_checkpoint(last)
        missing = await asyncio.to_thread(self.store.gaps.missing, first, last)
        plan = await backfill.plan(missing)
        if backfill.lake is not None and any(lake is not None for lake, _ in plan):
            # A lake of another network (or none at all) is a setting to change: said before
            # any chunk is planned, not once per chunk.
            await backfill.lake.lake.layout()
        run_id, chunks = await asyncio.to_thread(
            self.store.chunks.plan,
            first,
            last,
            self.settings.backfill_chunk_ledgers,
            self.requested_by,
            missing,
        )
        log.info("backfill_planned", run=run_id, first=first, last=last, chunks=len(chunks))
        total = last - first + 1
        if self.store.is_sqlite():
            for chunk in chunks:
                # Recorded in its chunk row and reported below; the next chunk goes on.
                with contextlib.suppress(ReconcilerError):
                    await self.writer.run(chunk.id)
                if progress is not None:
                    summary = await asyncio.to_thread(self.store.chunks.summary, run_id)
                    progress(summary["done_ledgers"], total)
        else:
            from stellar_reconciler.backfill_queue import defer_chunks

            await defer_chunks(self.settings, [c.id for c in chunks])
            await self._work_and_wait(run_id, total, progress)
        return await self.report(run_id)

    async def _work_and_wait(self, run_id: int, total: int, progress: Progress | None) -> None:
        """Work on the queue beside any backfill-workers until no chunk of the run is pending
        or running; a round that finds the queue empty while chunks are still out (with
        another worker, or waiting for a retry or a stalled worker's timeout) starts again."""
        from stellar_reconciler.backfill_queue import recover_once, work

        name = f"{self.writer.name}:run-{run_id}"
        rounds: asyncio.Task[None] | None = None
        try:
            while True:
                summary = await asyncio.to_thread(self.store.chunks.summary, run_id)
                if progress is not None:
                    progress(summary["done_ledgers"], total)
                if not (summary["chunks"]["pending"] or summary["chunks"]["running"]):
                    break
                if rounds is None or rounds.done():
                    if rounds is not None:
                        rounds.result()
                    task = (
                        work(self.settings, self.writer.run, wait=False, name=name)
                        if self.work
                        else _after(POLL_SECS * 4, recover_once(self.settings))
                    )
                    rounds = asyncio.create_task(task)
                await asyncio.sleep(POLL_SECS)
        finally:
            if rounds is not None and not rounds.done():
                rounds.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await rounds

    async def report(self, run_id: int) -> dict[str, Any]:
        """The run as `reconciler backfill` prints it; BackfillChunksFailedError when any
        chunk failed (the others are written)."""
        result = await stitch(self.store, run_id)
        resolved = await asyncio.to_thread(
            self.store.gaps.resolve_filled, "a backfill from the data lake and the RPC"
        )
        summary = await asyncio.to_thread(self.store.chunks.summary, run_id)
        if summary["errors"]:
            raise BackfillChunksFailedError(
                [
                    f"chunk {e['first_ledger']}-{e['last_ledger']}: {e['error']}"
                    for e in summary["errors"]
                ]
            )
        return {
            "run": run_id,
            "first_ledger": summary["first_ledger"],
            "last_ledger": summary["last_ledger"],
            "missing": summary["missing"],
            "from_lake": merged(summary["sources"], "lake"),
            "from_rpc": merged(summary["sources"], "rpc"),
            "ledgers_written": summary["ledgers_written"],
            "events_written": summary["events_written"],
            "chunks": sum(summary["chunks"].values()),
            "verified_contiguous_through": result.verified_through,
            "retention_gaps_resolved": [list(r) for r in resolved],
        }


async def _after(delay: float, action: Awaitable[Any]) -> None:
    await asyncio.sleep(delay)
    await action


def merged(sources: list[list[Any]], kind: str) -> list[list[int]]:
    """The ranges read from one source, neighbours joined: chunk by chunk they are cut."""
    ranges = sorted((int(a), int(b)) for k, a, b in sources if k == kind)
    joined: list[list[int]] = []
    for a, b in ranges:
        if joined and a == joined[-1][1] + 1:
            joined[-1][1] = b
        else:
            joined.append([a, b])
    return joined


async def run_backfill(
    settings: Settings,
    first: int,
    last: int,
    progress: Progress | None = None,
    work: bool = True,
) -> dict[str, Any]:
    """`reconciler backfill`: never creates a database."""
    store, rpc, backfill = await _open(settings)
    try:
        if not work and store.is_sqlite():
            raise BackfillRangeError(
                "--queue-only needs PostgreSQL (the queue lives there); on SQLite leave it out"
            )
        chunked = ChunkedBackfill(settings, backfill, work=work)
        return await chunked.run(first, last, progress)
    finally:
        await rpc.aclose()
        store.close()


async def run_backfill_worker(settings: Settings) -> None:
    """`reconciler backfill-worker`: take chunks from the queue until SIGINT or SIGTERM."""
    from stellar_reconciler.backfill_queue import work

    store, rpc, backfill = await _open(settings)
    try:
        if store.is_sqlite():
            raise BackfillRangeError(
                "backfill workers share a job queue in PostgreSQL; on SQLite `reconciler "
                "backfill` runs every chunk itself. Point DATABASE_URL at PostgreSQL"
            )
        writer = ChunkWriter(backfill)
        name = f"{socket.gethostname()}:{os.getpid()}"
        log.info("backfill_worker_started", name=name)
        await work(settings, writer.run, wait=True, name=name, install_signal_handlers=True)
    finally:
        await rpc.aclose()
        store.close()


async def _open(settings: Settings) -> tuple[Store, StellarRpc, Backfill]:
    store = await asyncio.to_thread(Store.open_existing, settings.sqlalchemy_url)
    # The events it adds are queued for NATS like the service's; the running service sends them.
    store.outbox.enabled = bool(settings.nats_url)
    rpc = StellarRpc.from_settings(settings)
    return store, rpc, Backfill.for_settings(store, rpc, settings)
