"""The backfill's job queue on PostgreSQL: Procrastinate, in the service's own database.

Each chunk of a backfill run is one Procrastinate job; any number of `reconciler
backfill-worker` processes, on any number of machines, take them one at a time. Procrastinate
locks a job to the worker that took it and retries it after a transient fault. A worker killed
outright (SIGKILL, a lost machine) stops sending heartbeats: every worker looks for such
stalled jobs and puts them back in the queue, so the chunk runs again. Running it again is
safe because a chunk commits whole or not at all (store/chunks.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import structlog
from procrastinate import App, JobContext, PsycopgConnector, RetryStrategy
from procrastinate.exceptions import ConnectorException

from stellar_reconciler.config import Settings, libpq_url
from stellar_reconciler.errors import (
    DatabaseUnavailableError,
    LakeUnreachableError,
    RpcTransientError,
)

log = structlog.get_logger("stellar_reconciler.backfill_queue")

QUEUE = "stellar_reconciler_backfill"
TASK = "stellar_reconciler.backfill_chunk"
# Tries of one chunk against faults that may pass (an RPC, a lake or the database away).
MAX_ATTEMPTS = 5
TRANSIENT: tuple[type[Exception], ...] = (
    RpcTransientError,
    LakeUnreachableError,
    DatabaseUnavailableError,
)

# Runs one chunk: (chunk id, attempts made before this one, whether this is the last try).
ChunkJob = Callable[[int, bool], Awaitable[None]]


def build_app(settings: Settings) -> App:
    return App(connector=PsycopgConnector(conninfo=libpq_url(settings.database_url)))


async def defer_chunks(settings: Settings, chunk_ids: Sequence[int]) -> None:
    """Queue one job per chunk; the lock keeps two workers off one chunk even when a stalled
    job is put back while its first worker still lives."""
    app = build_app(settings)
    async with app.open_async():
        for chunk_id in chunk_ids:
            deferrer = app.configure_task(TASK, queue=QUEUE, lock=f"backfill-chunk-{chunk_id}")
            await deferrer.defer_async(chunk_id=chunk_id)


async def requeue_stalled(app: App, stalled_secs: float) -> int:
    """Put back in the queue the chunks of workers silent for `stalled_secs`; how many."""
    jobs = await app.job_manager.get_stalled_jobs(
        task_name=TASK, seconds_since_heartbeat=stalled_secs
    )
    requeued = 0
    for job in jobs:
        try:
            await app.job_manager.retry_job(job)
        except ConnectorException as exc:
            # Another worker put it back first.
            log.info("stalled_chunk_taken", job=job.id, error=str(exc))
            continue
        requeued += 1
        log.warning("stalled_chunk_requeued", job=job.id, args=job.task_kwargs)
    return requeued


async def work(
    settings: Settings,
    run_chunk: ChunkJob,
    *,
    wait: bool,
    name: str = "backfill-worker",
    install_signal_handlers: bool = False,
) -> None:
    """Take chunks until stopped (`wait`) or until the queue is empty, putting back stalled
    ones meanwhile."""
    app = build_app(settings)
    stalled = settings.backfill_stalled_secs
    retry = RetryStrategy(max_attempts=MAX_ATTEMPTS, wait=1, retry_exceptions=TRANSIENT)

    @app.task(name=TASK, queue=QUEUE, pass_context=True, retry=retry)
    async def backfill_chunk(context: JobContext, chunk_id: int) -> None:
        last_try = context.job.attempts + 1 >= MAX_ATTEMPTS
        await run_chunk(chunk_id, last_try)

    async def recover() -> None:
        while True:
            await requeue_stalled(app, stalled)
            await asyncio.sleep(stalled / 2)

    async with app.open_async():
        recovery = asyncio.create_task(recover())
        try:
            await app.run_worker_async(
                queues=[QUEUE],
                name=name,
                wait=wait,
                concurrency=1,
                install_signal_handlers=install_signal_handlers,
                update_heartbeat_interval=max(stalled / 6, 0.5),
                stalled_worker_timeout=stalled,
                fetch_job_polling_interval=1.0,
                delete_jobs="successful",
            )
        finally:
            recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recovery


async def recover_once(settings: Settings) -> int:
    """One look for stalled chunks, for a process that waits on a run without working."""
    app = build_app(settings)
    async with app.open_async():
        return await requeue_stalled(app, settings.backfill_stalled_secs)
