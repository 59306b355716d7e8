"""Publisher: sends the outbox (store/outbox.py) to NATS JetStream, in order, each message once.

Every message carries `Nats-Msg-Id` (the event id), so a message sent again after a crash
between JetStream's acknowledgement and the outbox's delete is dropped by the stream's
duplicate window (two minutes unless the stream says otherwise). A message leaves the outbox
only once JetStream acknowledged it.

Order: messages go out in outbox order on one connection, which JetStream stores in the
order received; their acknowledgements are gathered as acknowledgements.py says.

One acknowledgement per window instead of one per message: once the stream's last message is
known to be ours, each message of the next window names its predecessor's id in
`Nats-Expected-Last-Msg-Id` and only the last asks for an answer. JetStream refuses a message
whose named predecessor is not the stream's last one, so that last answer, if it says stored,
proves the whole window stored once, in order, with nothing in between; any other answer
(another writer got in, the server restarted, a duplicate) sends the window again one message
at a time, and the duplicate window drops what had been stored. Parsing an answer per message
was half of the publisher's time. The client's
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
from typing import Any, Protocol

import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext

from stellar_reconciler.acknowledgements import Acknowledgements
from stellar_reconciler.config import Settings, redact_url
from stellar_reconciler.errors import DatabaseUnavailableError
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
_UNSAID = object()


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


class PublishingReport(Protocol):
    """Where the publisher says whether it can send: the service's status in this process,
    the pipe to the parent in a publishing child (publish_child.py)."""

    def publishing_state(self, failure: str | None) -> None:
        """Why publishing fails, or None once it works."""


class PublishFailedError(Exception):
    """JetStream did not acknowledge a message; the connection is dropped and rebuilt."""


class NatsPublisher:
    def __init__(
        self,
        store: Store,
        report: PublishingReport,
        servers: str,
        stream: str,
        prefix: str,
        *,
        batch: int = BATCH,
        ack_timeout: float = ACK_TIMEOUT_SECS,
        flush_secs: float = FLUSH_SECS,
    ) -> None:
        self.store = store
        self.report = report
        self.servers = [url.strip() for url in servers.split(",") if url.strip()]
        self.stream = stream
        self.prefix = prefix
        self.batch = batch
        self.ack_timeout = ack_timeout
        self.flush_secs = flush_secs
        self.published = 0
        # Windows sent chained (one acknowledgement each), and chains found broken (another
        # writer in the stream, a restarted server): those windows were sent again one by one.
        self.chained_windows = 0
        self.broken_chains = 0
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
        # The state last reported (a reason publishing fails, None once it works), or
        # _UNSAID before the first: each change is reported and logged once.
        self._said: object = _UNSAID
        # The Nats-Msg-Id of the stream's last message when we know it (our own last one,
        # acknowledged as newly stored), else None; see _send_chained.
        self._last_id: str | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, store: Store, report: PublishingReport
    ) -> NatsPublisher:
        return cls(
            store, report, settings.nats_url, settings.nats_stream, settings.nats_subject_prefix
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
            # Every subject is made of checked tokens (event_subject, the validated prefix):
            # checking each again cost a regular expression per message.
            skip_subject_validation=True,
        )
        self._js = self._nc.jetstream(timeout=self.ack_timeout)
        try:
            await self._js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            await self._js.add_stream(name=self.stream, subjects=[f"{self.prefix}.>"])
            log.info("nats_stream_created", stream=self.stream, subjects=f"{self.prefix}.>")
        self._acks = Acknowledgements(self._nc.new_inbox())
        # Unknown on a new connection (another publisher may have written since): the first
        # window is acknowledged message by message, which makes it known again.
        self._last_id = None
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
        count, failure = await self._send_events(
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

    async def _send_events(
        self, messages: list[tuple[str, bytes, str]]
    ) -> tuple[int, BaseException | None]:
        """Send a window of events: chained when the stream's last message id is known (one
        acknowledgement for the window), else, or when the chain breaks, acknowledged one by
        one. Returns what _send returns."""
        if messages and self._last_id is not None:
            if await self._send_chained(messages):
                self.chained_windows += 1
                return len(messages), None
            self.broken_chains += 1
            log.debug("nats_chain_broken", window=len(messages))
        return await self._send(messages)

    async def _send_chained(self, messages: list[tuple[str, bytes, str]]) -> bool:
        """Publish the window with each message naming its predecessor's id in
        `Nats-Expected-Last-Msg-Id` (the first names the stream's last message), and only the
        last one asking for an answer. JetStream stores a message only while the stream's
        last id is the one it names, so the last one stored (not as a duplicate) proves all
        before it were stored, in order, with nothing else in between. True when it was."""
        assert self._nc is not None, "connect first"
        assert self._acks is not None, "connect first"
        reply = self._acks.open(1)
        previous, self._last_id = self._last_id, None
        last = len(messages) - 1
        try:
            for place, (subject, body, msg_id) in enumerate(messages):
                await self._nc.publish(
                    subject,
                    body,
                    reply=f"{reply}0" if place == last else "",
                    headers={"Nats-Msg-Id": msg_id, "Nats-Expected-Last-Msg-Id": previous or ""},
                )
                previous = msg_id
        except NATS_ERRORS:
            return False
        count, _why = await self._acks.gathered(self.ack_timeout)
        if count == 1 and self._acks.last_stored:
            self._last_id = previous
            return True
        return False

    async def _send(
        self, messages: list[tuple[str, bytes, str]]
    ) -> tuple[int, BaseException | None]:
        """Publish (subject, body, message id) in order on this connection and wait for the
        acknowledgements: (how many from the front were acknowledged, the first failure)."""
        assert self._nc is not None, "connect first"
        assert self._acks is not None, "connect first"
        reply = self._acks.open(len(messages))
        self._last_id = None
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
        if failure is None and self._acks.last_stored:
            # The stream's last message is now ours: the next window can be chained to it.
            self._last_id = messages[-1][2]
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
        if not isinstance(self._said, str):
            log.warning("nats_publishing_failing", servers=self.shown_servers, error=str(exc))
        self._say(reason)

    def _recovered(self) -> None:
        self._retry = FIRST_RETRY_SECS
        if isinstance(self._said, str):
            log.info("nats_publishing_recovered", servers=self.shown_servers)
        self._say(None)

    def _say(self, failure: str | None) -> None:
        # Said when it changes, and once at first (a restarted publishing child clears the
        # reason its parent gave while it was gone).
        if failure != self._said:
            self._said = failure
            self.report.publishing_state(failure)

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
