"""GET /api/events/stream: committed events pushed as Server-Sent Events, resumable.

Each event goes out once, in id order (the order of GET /api/events), as `id: <event id>` and
`data: <the event as GET /api/events shows it>`. A client that reconnects with the
`Last-Event-ID` header resumes right after that id, so it misses nothing and sees nothing
twice. Id order is commit order: the checkpoint's compare-and-set makes every batch start
where the last one ended, so a reader never sees an id appear below one it has already seen.
(Repairs and gap fills write behind the checkpoint; a stream already beyond what they write
does not go back for it: GET /api/events has it.)

Per client, a reader task takes pages from the store into a small bounded queue and a sender
writes them to the socket; the store is read in short transactions that end before a byte
is written, so however slow a client is, it never holds a lock or a snapshot the worker
waits on. A client that accepts nothing for `send_timeout` seconds is cut off (it resumes
with Last-Event-ID when it is ready). The reader wakes when the status version moves (the
worker committed a batch) and otherwise looks again every IDLE_RECHECK_SECONDS, for commits
made by another process on the same database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.types import Message, Receive, Scope, Send
from stellar_sdk import StrKey

from stellar_reconciler.api.auth import ReadAccess
from stellar_reconciler.api.context import ApiContext, context
from stellar_reconciler.api.data import topic_name
from stellar_reconciler.api.errors import ApiError, invalid_param
from stellar_reconciler.api.params import LedgerQuery
from stellar_reconciler.errors import DatabaseUnavailableError
from stellar_reconciler.metrics import Metrics
from stellar_reconciler.status import ServiceStatus
from stellar_reconciler.store import EventQuery, Store

log = structlog.get_logger(__name__)

router = APIRouter(tags=["data"], dependencies=[ReadAccess])
Ctx = Annotated[ApiContext, Depends(context)]

_EVENT_ID = re.compile(r"[0-9]{19}-[0-9]{10}")
# Events per store read, and pages read ahead of the socket: together they bound what one
# client holds in memory: three pages at most, a few hundred KiB each for typical events.
PAGE_EVENTS = 500
QUEUE_PAGES = 2
# The status version moves with this process's own commits; a commit made by another process
# on the same database is found by this re-read, which costs one indexed query.
IDLE_RECHECK_SECONDS = 5.0
HEARTBEAT = b": ping\n\n"


@dataclasses.dataclass
class EventStreams:
    """What every open event stream shares: its timings, and the signal that ends them all."""

    heartbeat_seconds: float = 15.0
    send_timeout_seconds: float = 30.0
    closing: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    open_streams: int = 0


def install_event_stream(app: FastAPI) -> None:
    app.state.event_streams = EventStreams()
    app.include_router(router)


def close_event_streams(app: FastAPI) -> None:
    """End every open event stream (call as the service stops): clients reconnect elsewhere
    with Last-Event-ID instead of holding the shutdown up."""
    streams: EventStreams = app.state.event_streams
    streams.closing.set()


# (event id, the event as JSON text on one line), as Store.event_texts reads them.
Page = list[tuple[str, str]]


def encode(rows: Page) -> bytes:
    """Events in the wire format: one `id:` and one `data:` line each."""
    return "".join(f"id: {event_id}\ndata: {text}\n\n" for event_id, text in rows).encode()


class EventPages:
    """Pages of events after a position, read in short transactions, forever."""

    def __init__(self, store: Store, status: ServiceStatus, query: EventQuery) -> None:
        self.store = store
        self.status = status
        self.query = query
        self.version = status.version

    def read(self) -> Page:
        """The next page (possibly empty), moving the position past it."""
        # Taken before the read, so a commit that lands after it is never waited past.
        self.version = self.status.version
        rows = self.store.event_texts(self.query)
        if rows:
            self.query = dataclasses.replace(self.query, after_id=rows[-1][0])
        return rows

    async def fill(self, queue: asyncio.Queue[bytes], first: Page) -> None:
        """Put pages into `queue` as they are committed, starting with `first` (the page
        just read); waits while the queue is full, so a slow client reads nothing ahead."""
        rows = first
        while True:
            if rows:
                await queue.put(encode(rows))
            if len(rows) < self.query.limit:
                # Caught up: wait for a commit (a full page means more may be waiting).
                await self.status.wait_changed(self.version, IDLE_RECHECK_SECONDS)
            rows = await run_in_threadpool(self.read)


class EventStreamResponse(Response):
    """A `text/event-stream` answer that owns its send loop, so it can put a deadline on
    each write and notice a client that went away."""

    media_type = "text/event-stream"

    def __init__(
        self,
        pages: EventPages | None = None,
        first: Page | None = None,
        streams: EventStreams | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        # The body is open-ended: no length (Response declares 0 for its empty content).
        del self.headers["content-length"]
        self.pages = pages
        self.first = first or []
        self.streams = streams or EventStreams()
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        if self.pages is None:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_PAGES)
        streams = self.streams
        self._count_open(+1)
        tasks = [
            asyncio.create_task(self.pages.fill(queue, self.first)),
            asyncio.create_task(self._send_pages(queue, send)),
            asyncio.create_task(_until_disconnect(receive)),
            asyncio.create_task(streams.closing.wait()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._count_open(-1)
            await _cancel_all(tasks)
        stored, sender = tasks[0], tasks[1]
        error = sender.exception() if sender in done else None
        if isinstance(error, TimeoutError):
            # Leaving without ending the body makes the server drop the connection (uvicorn
            # logs that it did); ending it properly would wait on the same full socket.
            log.warning("event_stream_client_too_slow", seconds=streams.send_timeout_seconds)
            if self.metrics is not None:
                self.metrics.event_stream_cutoffs.inc()
            return
        if error is None and stored in done:
            error = stored.exception()
        if isinstance(error, DatabaseUnavailableError):
            # The client resumes with Last-Event-ID once the database answers again.
            log.warning("event_stream_database_unavailable", error=str(error))
        elif error is not None:
            raise error
        await _finish(send, streams.send_timeout_seconds)

    def _count_open(self, change: int) -> None:
        self.streams.open_streams += change
        if self.metrics is not None:
            self.metrics.event_streams.set(self.streams.open_streams)

    async def _send_pages(self, queue: asyncio.Queue[bytes], send: Send) -> None:
        streams = self.streams
        while True:
            try:
                async with asyncio.timeout(streams.heartbeat_seconds):
                    body = await queue.get()
            except TimeoutError:
                body = HEARTBEAT
            async with asyncio.timeout(streams.send_timeout_seconds):
                await send({"type": "http.response.body", "body": body, "more_body": True})


async def _cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel until every task has ended: on Python 3.11, asyncio.wait_for (which the
    status's wait uses) swallows a cancellation that arrives as its inner await completes."""
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=1.0)


async def _until_disconnect(receive: Receive) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _finish(send: Send, within: float) -> None:
    try:
        async with asyncio.timeout(within):
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except TimeoutError:
        log.warning("event_stream_client_too_slow", seconds=within)


def last_event_id(value: str | None) -> str | None:
    """The id to resume after, from the Last-Event-ID header (empty means none, as in
    EventSource); 400 when it is not an event id."""
    if not value:
        return None
    if not _EVENT_ID.fullmatch(value):
        message = (
            "must be the id of an event this stream sent (19 digits, a hyphen, 10 digits, as "
            "in its `id:` lines); reconnect without it to start from the beginning"
        )
        raise _bad_header("Last-Event-ID", message)
    return value


def _bad_header(name: str, message: str) -> ApiError:
    entry = {"loc": ["header", name], "msg": message, "type": "value_error"}
    return ApiError(400, f"{name}: {message}", [entry])


@router.get(
    "/api/events/stream",
    response_class=EventStreamResponse,
    status_code=200,
    summary="Committed events as they are stored, resumable (Server-Sent Events)",
    description=(
        "A `text/event-stream` of the events GET /api/events lists, oldest first, then each "
        "new one as it is committed. Every event is one SSE event: `id` is the event id and "
        "`data` the event as GET /api/events shows it. Reconnect with the `Last-Event-ID` "
        "header (EventSource does this itself) to resume right after that event: nothing is "
        "missed or repeated. `: ping` comments keep an idle connection open; a client that "
        "reads nothing for 30 s is disconnected and may resume the same way."
    ),
    responses={
        200: {
            "description": "Events as `id:` and `data:` lines, and `: ping` comments",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        400: {
            "description": "Last-Event-ID is not an event id",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        },
        422: {"description": "A query parameter is invalid"},
    },
)
async def event_stream(
    request: Request,
    ctx: Ctx,
    contract_id: Annotated[str | None, Query(description="Contract strkey (C...)")] = None,
    topic: Annotated[
        str | None, Query(description="Event name: the first topic, e.g. transfer")
    ] = None,
    from_ledger: LedgerQuery = None,
    last_event_id_header: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="The id of the last event received: the stream resumes after it",
        ),
    ] = None,
) -> EventStreamResponse:
    if contract_id is not None and not StrKey.is_valid_contract(contract_id):
        raise invalid_param("contract_id", "must be a contract strkey: C followed by 55 characters")
    query = EventQuery(
        contract_id=contract_id,
        name=topic_name(topic) if topic is not None else None,
        from_ledger=from_ledger,
        after_id=last_event_id(last_event_id_header),
        limit=PAGE_EVENTS,
    )
    pages = EventPages(ctx.store, ctx.status, query)
    # The first page is read before answering, so a database that is down is a 503.
    first = await run_in_threadpool(pages.read)
    return EventStreamResponse(pages, first, request.app.state.event_streams, ctx.metrics)
