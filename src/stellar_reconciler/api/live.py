"""GET /api/stream: Server-Sent Events carrying everything the dashboard shows.

A client gets a full snapshot when it connects, then a fresh one whenever the status version
moves (a batch committed, a job progressed, the worker paused, ...) or a new telemetry sample
is taken, and a keep-alive comment when nothing happened for 15 s. Every snapshot is whole,
so a client that reconnects simply replaces its state: there is nothing to replay.

EventSource cannot send headers, so when READ_TOKEN is set this one endpoint also accepts
`?ticket=`, a short-lived ticket from POST /api/stream/ticket (which takes the token in the
header), so no token need ever sit in a URL where proxies and browser history keep it; and,
for clients that have nothing else, the token as `?token=` (the read or the admin token).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.sse import EventSourceResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from stellar_reconciler.api import monitoring
from stellar_reconciler.api.auth import ReadAccess, require_read
from stellar_reconciler.api.context import ApiContext, context
from stellar_reconciler.api.errors import ApiError
from stellar_reconciler.api.tickets import Tickets
from stellar_reconciler.errors import DatabaseUnavailableError
from stellar_reconciler.store import EventQuery

router = APIRouter(tags=["monitoring"])
Ctx = Annotated[ApiContext, Depends(context)]

RECENT_EVENTS = 20
NEWEST_DISCREPANCIES = 5
RECENTLY_RESOLVED = 5
RECENT_JOBS = 10
# Snapshots for one client are at least this far apart: a catch-up commits many batches a
# second, and a page cannot show them faster anyway. Well under the one-second promise.
MIN_SNAPSHOT_GAP = 0.2
# Long enough to open the stream and survive a dropped connection's quick reconnection;
# after that the page asks for a new one.
TICKET_SECONDS = 60.0


class TelemetryNow(BaseModel):
    interval_seconds: float = Field(description="Seconds between telemetry samples")
    latest: dict[str, Any] | None = Field(
        description="The newest sample, as in GET /api/telemetry (null before the first)"
    )


class DiscrepancySummary(BaseModel):
    open_counts: dict[str, int] = Field(description="Open discrepancies per kind, every kind")
    newest_open: list[dict[str, Any]] = Field(
        description=f"The newest {NEWEST_DISCREPANCIES} open ones, as GET /api/discrepancies"
    )
    recently_resolved: list[dict[str, Any]] = Field(
        default_factory=list,
        description=(
            f"The {RECENTLY_RESOLVED} most recently opened of those already resolved (when, by "
            "whom, how), as GET /api/discrepancies?open=false"
        ),
    )


class Snapshot(BaseModel):
    """One `data:` of /api/stream: the whole state the dashboard shows."""

    version: int = Field(description="Status version this reflects; grows with every change")
    status: dict[str, Any] = Field(description="Exactly what GET /api/status returns")
    telemetry: TelemetryNow
    events: list[dict[str, Any]] = Field(
        description=f"The newest {RECENT_EVENTS} events, newest first, as GET /api/events"
    )
    discrepancies: DiscrepancySummary
    jobs: list[dict[str, Any]] = Field(
        description=f"The {RECENT_JOBS} most recent rescans and verifications, as GET /api/jobs"
    )
    expectations: dict[str, Any] = Field(description="What GET /api/reconciliation returns")
    catch_up: dict[str, Any] | None = Field(
        default=None,
        description=(
            "The catch-up under way (ledgers done and remaining, ledgers/s, events/s, ETA in "
            "seconds); null when following the tip"
        ),
    )
    database_error: str | None = Field(
        default=None,
        description=(
            "Why the database could not be read for this snapshot (null when it could); "
            "events, discrepancies and expectations are then the last ones read"
        ),
    )


class SnapshotSource:
    """Builds snapshots; clients asking for the same state share one database read."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self._built: tuple[tuple[int, float | None], Snapshot] | None = None
        # The last parts read from the database, shown (marked stale) while it is down.
        self._last_stored: dict[str, Any] = {
            "events": [],
            "discrepancies": DiscrepancySummary(open_counts={}, newest_open=[]),
            "expectations": {},
        }
        self._lock = asyncio.Lock()
        # Set when the service stops, so open streams end instead of holding shutdown up.
        self.closing = False

    def state_key(self) -> tuple[int, float | None]:
        """What a snapshot depends on that changes: the status version and the newest
        telemetry sample."""
        samples = self.ctx.telemetry.samples()
        return self.ctx.status.version, samples[-1]["t"] if samples else None

    async def current(self) -> tuple[tuple[int, float | None], Snapshot]:
        async with self._lock:
            key = self.state_key()
            if self._built is None or self._built[0] != key:
                self._built = (key, await self._build(key[0]))
            return self._built

    async def _build(self, version: int) -> Snapshot:
        ctx = self.ctx
        # Jobs and telemetry belong to the event loop; the store is read in a thread.
        jobs = [job.as_json() for job in ctx.controls.jobs()[:RECENT_JOBS]]
        samples = ctx.telemetry.samples()
        catch_up = ctx.status.catch_up.current
        stored = await run_in_threadpool(self._read_store)
        return Snapshot(
            version=version,
            telemetry=TelemetryNow(
                interval_seconds=ctx.telemetry.interval,
                latest=samples[-1] if samples else None,
            ),
            jobs=jobs,
            catch_up=catch_up.as_json() if catch_up else None,
            **stored,
        )

    def _read_store(self) -> dict[str, Any]:
        store = self.ctx.store
        status = monitoring.status(self.ctx)
        try:
            self._last_stored = {
                "events": store.list_events(EventQuery(limit=RECENT_EVENTS, descending=True)),
                "discrepancies": DiscrepancySummary(
                    open_counts=store.discrepancies.open_counts(),
                    newest_open=store.discrepancies.listing(
                        is_open=True, limit=NEWEST_DISCREPANCIES
                    ),
                    recently_resolved=store.discrepancies.listing(
                        is_open=False, limit=RECENTLY_RESOLVED
                    ),
                ),
                "expectations": store.expectations.summary(),
            }
        except DatabaseUnavailableError as exc:
            # A dashboard watching an outage should see it, not a stream that breaks off.
            return {**self._last_stored, "status": status, "database_error": str(exc)}
        return {**self._last_stored, "status": status, "database_error": status["database_error"]}


def install_live(app: FastAPI, ctx: ApiContext) -> None:
    app.state.snapshots = SnapshotSource(ctx)
    app.state.stream_tickets = Tickets(TICKET_SECONDS)
    app.include_router(router)


def close_streams(app: FastAPI) -> None:
    """End every open stream within a second (call as the service stops), so the HTTP
    server need not wait out its graceful-shutdown timeout for them."""
    source: SnapshotSource = app.state.snapshots
    source.closing = True


def token_allows_read(token: str, read_token: str, admin_token: str) -> bool:
    """The `?token=` value is the read token or the admin token (compared in constant time)."""
    return any(
        expected and hmac.compare_digest(token.encode(), expected.encode())
        for expected in (read_token, admin_token)
    )


def stream_access(
    request: Request,
    ctx: Ctx,
    token: Annotated[
        str | None,
        Query(
            description=(
                "Only when READ_TOKEN is set: the read or admin token, because EventSource "
                "cannot send an Authorization header. Other endpoints take the header only."
            )
        ),
    ] = None,
    ticket: Annotated[
        str | None,
        Query(description="A ticket from POST /api/stream/ticket, instead of a token"),
    ] = None,
) -> None:
    if ticket is not None and ctx.read_token:
        tickets: Tickets = request.app.state.stream_tickets
        if not tickets.valid(ticket):
            error = ApiError(
                401,
                "the stream ticket is unknown or expired: ask POST /api/stream/ticket for another",
            )
            error.headers = {"WWW-Authenticate": "Bearer"}
            raise error
        return
    if token is None or not ctx.read_token:
        require_read(request, ctx)
        return
    if not token_allows_read(token, ctx.read_token, ctx.admin_token):
        error = ApiError(401, "the token parameter is neither the READ_TOKEN nor the ADMIN_TOKEN")
        error.headers = {"WWW-Authenticate": "Bearer"}
        raise error


class StreamTicket(BaseModel):
    ticket: str = Field(description="Pass as /api/stream?ticket=")
    expires_in_seconds: float = Field(description="Seconds the ticket opens the stream for")


@router.post(
    "/api/stream/ticket",
    dependencies=[ReadAccess],
    summary="A short-lived ticket that opens /api/stream, so no token goes in its URL",
    responses={401: {"description": "READ_TOKEN is set and no valid token was given"}},
)
def stream_ticket(request: Request) -> StreamTicket:
    tickets: Tickets = request.app.state.stream_tickets
    return StreamTicket(ticket=tickets.issue(), expires_in_seconds=tickets.lifetime)


@router.get(
    "/api/stream",
    response_class=EventSourceResponse,
    dependencies=[Depends(stream_access)],
    summary="Live snapshots of everything the dashboard shows (Server-Sent Events)",
    description=(
        "A `text/event-stream`. Each event's `data` is a whole Snapshot (JSON): one on "
        "connect, then one after every change (a batch committed, a job moved, a pause) and "
        "every new telemetry sample, at most five a second; `: ping` comments keep an idle "
        "connection open. A reconnecting client gets a fresh snapshot and needs nothing else. "
        "When READ_TOKEN is set, send it as a Bearer header or, from a browser's EventSource, "
        "pass a ticket from POST /api/stream/ticket as `?ticket=` (or the token as `?token=`)."
    ),
    responses={401: {"description": "READ_TOKEN is set and no valid token was given"}},
)
async def stream(request: Request) -> AsyncIterator[Snapshot]:
    source: SnapshotSource = request.app.state.snapshots
    async for snapshot in snapshots(source):
        yield snapshot


async def snapshots(source: SnapshotSource) -> AsyncIterator[Snapshot]:
    """Snapshots as the state changes, until the source closes."""
    status, telemetry = source.ctx.status, source.ctx.telemetry
    sent_key: tuple[int, float | None] | None = None
    sent_at = float("-inf")
    while not source.closing:
        key = source.state_key()
        if key == sent_key:
            # Wake on a change; look for a new telemetry sample (and for closing) twice
            # per sampling interval.
            await status.wait_changed(key[0], telemetry.interval / 2)
            continue
        delay = sent_at + MIN_SNAPSHOT_GAP - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent_key, snapshot = await source.current()
        sent_at = time.monotonic()
        yield snapshot
