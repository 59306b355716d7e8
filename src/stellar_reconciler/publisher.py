"""Publisher: sends the outbox (store/outbox.py) to NATS JetStream, in order, each message once.

Every message carries `Nats-Msg-Id` (the event id), so a message sent again after a crash
between JetStream's acknowledgement and the outbox's delete is dropped by the stream's
duplicate window (two minutes unless the stream says otherwise). A message leaves the outbox
only once JetStream acknowledged it.

Order: messages go out in outbox order on one connection, which JetStream stores in the
order received; their acknowledgements are gathered as acknowledgements.py says. The client's
own reconnect buffer is off: after a lost connection it could
send later messages before one lost in the socket. Instead a failure closes the connection,
what was acknowledged is deleted, and the rest is sent again, in order, on a new connection.

New discrepancies and settled expected records go to PREFIX.discrepancies and
PREFIX.expectations; their own rows carry the mark (published_at), set once acknowledged.

While NATS is unreachable ingestion goes on; the outbox grows (reconciler_nats_outbox_pending)
and health says why until publishing works again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from typing import Any

import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext

from stellar_reconciler.acknowledgements import Acknowledgements
from stellar_reconciler.config import Settings, redact_url
from stellar_reconciler.errors import DatabaseUnavailableError
from stellar_reconciler.status import ServiceStatus
from stellar_reconciler.store import Publication, Store

log = structlog.get_logger("stellar_reconciler.publisher")

# A symbol's characters (Soroban symbols are at most 32 of them): a safe NATS subject token.
_SYMBOL = re.compile(r"^[A-Za-z0-9_]{1,32}$")
_CONTRACT = re.compile(r"^[A-Z0-9]{1,64}$")
# The subject token of an event without a symbol name (none, or a string that is no symbol).
UNNAMED = "_"
# Messages read from the outbox and sent before waiting for their acknowledgements.
BATCH = 2000
ACK_TIMEOUT_SECS = 10.0
CONNECT_TIMEOUT_SECS = 2.0
IDLE_POLL_SECS = 0.2
# Acknowledged messages are deleted from the outbox in one transaction per this many, or this
# often: a delete per window would wait for the worker's write lock on SQLite every time. A
# crash sends the undeleted ones again; the stream's duplicate window drops them.
FLUSH_MESSAGES = 5000
FLUSH_SECS = 1.0
# Discrepancies and settled records: looked for once a second, up to this many at a time.
DISCREPANCY_POLL_SECS = 1.0
DISCREPANCY_BATCH = 100
FIRST_RETRY_SECS = 0.2
MAX_RETRY_SECS = 5.0

# The last token of the subject of each kind that is not an event.
OTHER_SUBJECTS = {"discrepancy": "discrepancies", "expectation": "expectations"}

NATS_ERRORS = (nats.errors.Error, OSError, TimeoutError)


def event_subject(prefix: str, contract_id: str, name: str | None) -> str:
    """`<prefix>.<contract id>.<event name>`, every token a valid NATS subject token."""
    contract = contract_id if _CONTRACT.match(contract_id) else UNNAMED
    token = name if name is not None and _SYMBOL.match(name) else UNNAMED
    return f"{prefix}.{contract}.{token}"


def subject_of(prefix: str, item: Publication) -> str:
    if item.kind == "event":
        return event_subject(prefix, item.contract_id or "", item.name)
    return f"{prefix}.{OTHER_SUBJECTS[item.kind]}"


def as_body(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def message_id(item: Publication) -> str:
    """The event id for events; other kinds are numbered apart so ids never collide."""
    return item.ref if item.kind == "event" else f"{item.kind}-{item.ref}"


class PublishFailedError(Exception):
    """JetStream did not acknowledge a message; the connection is dropped and rebuilt."""


class NatsPublisher:
    def __init__(
        self,
        store: Store,
        status: ServiceStatus,
        servers: str,
        stream: str,
        prefix: str,
        *,
        batch: int = BATCH,
        ack_timeout: float = ACK_TIMEOUT_SECS,
        flush_secs: float = FLUSH_SECS,
    ) -> None:
        self.store = store
        self.status = status
        self.servers = [url.strip() for url in servers.split(",") if url.strip()]
        self.stream = stream
        self.prefix = prefix
        self.batch = batch
        self.ack_timeout = ack_timeout
        self.flush_secs = flush_secs
        self.published = 0
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._acks: Acknowledgements | None = None
        # The next outbox window, being read while the current one is sent: (the sequence
        # number it was read after, the read).
        self._ahead: tuple[int, asyncio.Future[list[Publication]]] | None = None
        # Acknowledged but still in the outbox (deleted together, see flush), and the last
        # of them: the next read starts after it.
        self._acknowledged: list[int] = []
        self._after = 0
        self._flushed_at = time.monotonic()
        # The wait before the next connection; doubles while publishing fails (a connection
        # that opens but cannot publish counts as failing too).
        self._retry = FIRST_RETRY_SECS

    @classmethod
    def from_settings(
        cls, settings: Settings, store: Store, status: ServiceStatus
    ) -> NatsPublisher:
        return cls(
            store, status, settings.nats_url, settings.nats_stream, settings.nats_subject_prefix
        )

    @property
    def shown_servers(self) -> str:
        return ",".join(redact_url(url) for url in self.servers)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop`; a NATS or database failure waits and tries again."""
        try:
            while not stop.is_set():
                try:
                    await self._connect()
                    await self._publish_until(stop)
                except (*NATS_ERRORS, PublishFailedError) as exc:
                    self._failing(exc)
                except DatabaseUnavailableError as exc:
                    log.warning("nats_outbox_unavailable", error=str(exc))
                await self._close()
                await _wait(stop, self._retry)
                self._retry = min(MAX_RETRY_SECS, self._retry * 2)
        finally:
            self._drop_ahead()
            await self._close()
            with contextlib.suppress(DatabaseUnavailableError):
                await self.flush()

    async def _connect(self) -> None:
        self._nc = await nats.connect(
            servers=self.servers,
            allow_reconnect=False,
            connect_timeout=CONNECT_TIMEOUT_SECS,
            error_cb=self._quiet,
            name="stellar-reconciler",
        )
        self._js = self._nc.jetstream(timeout=self.ack_timeout)
        try:
            await self._js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            await self._js.add_stream(name=self.stream, subjects=[f"{self.prefix}.>"])
            log.info("nats_stream_created", stream=self.stream, subjects=f"{self.prefix}.>")
        self._acks = Acknowledgements(self._nc.new_inbox())
        await self._nc.subscribe(
            f"{self._acks.inbox}.>",
            cb=self._acks.on_reply,
            # A window's answers must all fit, or the client drops some as a slow consumer.
            pending_msgs_limit=4 * max(self.batch, DISCREPANCY_BATCH),
        )

    async def _publish_until(self, stop: asyncio.Event) -> None:
        looked_at = float("-inf")
        while not stop.is_set():
            sent = await self.publish_pending()
            if time.monotonic() - looked_at >= DISCREPANCY_POLL_SECS:
                looked_at = time.monotonic()
                sent += await self.publish_discrepancies()
                sent += await self.publish_expectations()
            self._recovered()
            if not sent:
                await _wait(stop, IDLE_POLL_SECS)

    async def publish_pending(self) -> int:
        """Send the oldest outbox messages and wait for their acknowledgements; those
        acknowledged leave the outbox (see flush). Returns how many were sent; raises
        PublishFailedError when one was not acknowledged."""
        items = await self._read()
        if not items:
            await self.flush()
            return 0
        # The next window is read while this one is sent and acknowledged.
        after = items[-1].seq
        self._ahead = (
            after,
            asyncio.ensure_future(asyncio.to_thread(self.store.outbox.pending, self.batch, after)),
        )
        # An event whose ledger was re-indexed since has no body: nothing to send, and the
        # re-indexed rows were queued anew.
        sendable = [item for item in items if item.body is not None]
        count, failure = await self._send(
            [
                (subject_of(self.prefix, item), item.body or b"", message_id(item))
                for item in sendable
            ]
        )
        acknowledged = [item.seq for item in sendable[:count]]
        if failure is None:
            acknowledged = [item.seq for item in items]
        self._acknowledged.extend(acknowledged)
        if acknowledged:
            self._after = acknowledged[-1]
        self.published += count
        if (
            failure is not None
            or len(self._acknowledged) >= FLUSH_MESSAGES
            or time.monotonic() - self._flushed_at >= self.flush_secs
        ):
            await self.flush()
        if failure is not None:
            self._drop_ahead()
            raise PublishFailedError(str(failure) or type(failure).__name__) from failure
        return count

    async def _read(self) -> list[Publication]:
        """The window after the last one sent: the one read ahead when it still follows on
        (nothing failed and no flush restarted from the front since), else read now."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            after, reading = ahead
            items = await reading
            if after == self._after:
                return items
        return await asyncio.to_thread(self.store.outbox.pending, self.batch, self._after)

    def _drop_ahead(self) -> None:
        if self._ahead is not None:
            # The thread finishes its read; only its result is dropped.
            self._ahead[1].cancel()
            self._ahead = None

    async def publish_discrepancies(self) -> int:
        """Send discrepancies not yet published to PREFIX.discrepancies, oldest first."""
        found = await asyncio.to_thread(self.store.discrepancies.unpublished, DISCREPANCY_BATCH)
        count, failure = await self._send(
            [
                (f"{self.prefix}.discrepancies", as_body(item), f"discrepancy-{item['id']}")
                for item in found
            ]
        )
        await asyncio.to_thread(
            self.store.discrepancies.mark_published, [item["id"] for item in found[:count]]
        )
        if failure is not None:
            raise PublishFailedError(str(failure) or type(failure).__name__) from failure
        return count

    async def publish_expectations(self) -> int:
        """Send settled expected records not yet published to PREFIX.expectations; a record
        that settles again (moves to another event) is sent again, under another id."""
        found = await asyncio.to_thread(self.store.expectations.unpublished, DISCREPANCY_BATCH)
        count, failure = await self._send(
            [
                (
                    f"{self.prefix}.expectations",
                    as_body(body),
                    f"expectation-{record_id}-{body['status']}-{body['event_id'] or 'none'}",
                )
                for record_id, body in found
            ]
        )
        await asyncio.to_thread(self.store.expectations.mark_published, found[:count])
        if failure is not None:
            raise PublishFailedError(str(failure) or type(failure).__name__) from failure
        return count

    async def _send(
        self, messages: list[tuple[str, bytes, str]]
    ) -> tuple[int, BaseException | None]:
        """Publish (subject, body, message id) in order on this connection and wait for the
        acknowledgements: (how many from the front were acknowledged, the first failure)."""
        assert self._nc is not None, "connect first"
        assert self._acks is not None, "connect first"
        reply = self._acks.open(len(messages))
        failure: BaseException | None = None
        sent = 0
        try:
            for subject, body, msg_id in messages:
                await self._nc.publish(
                    subject, body, reply=f"{reply}{sent}", headers={"Nats-Msg-Id": msg_id}
                )
                sent += 1
        except NATS_ERRORS as exc:
            failure = exc
        if not sent:
            return 0, failure
        count, why = await self._acks.gathered(self.ack_timeout)
        count = min(count, sent)
        if failure is None and count < len(messages):
            failure = PublishFailedError(why or "not acknowledged")
        return count, failure

    async def flush(self) -> None:
        """Delete what JetStream acknowledged from the outbox, and read it from its start again
        (a row committed late, below the last one sent, is found then)."""
        if self._acknowledged:
            await asyncio.to_thread(self.store.outbox.mark_sent, self._acknowledged)
        self._acknowledged = []
        self._drop_ahead()
        self._after = 0
        self._flushed_at = time.monotonic()

    def _failing(self, exc: BaseException) -> None:
        reason = (
            f"NATS publishing failing ({self.shown_servers}, stream {self.stream}): "
            f"{str(exc) or type(exc).__name__}; events wait in the outbox "
            "(reconciler_nats_outbox_pending) and are published in order once NATS answers"
        )
        if self.status.publishing_failed(reason):
            log.warning("nats_publishing_failing", servers=self.shown_servers, error=str(exc))

    def _recovered(self) -> None:
        self._retry = FIRST_RETRY_SECS
        if self.status.publishing_recovered():
            log.info("nats_publishing_recovered", servers=self.shown_servers)

    async def _quiet(self, exc: Exception) -> None:
        # The client reports each socket error here; the failure that matters reaches run().
        log.debug("nats_client_error", error=str(exc))

    async def _close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.close(), CONNECT_TIMEOUT_SECS)
            except NATS_ERRORS as exc:
                log.debug("nats_close_failed", error=str(exc))


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return
