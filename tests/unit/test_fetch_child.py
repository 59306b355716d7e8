"""The fetch child's messages: batches as plain tuples, attempts riding home on replies."""

from __future__ import annotations

import pickle
from typing import Any

from stellar_reconciler.errors import ChainBreakError
from stellar_reconciler.fetch_child import ChildStart, FetchConfig, FollowRange, Reply, WireBatch
from stellar_reconciler.fetch_child import _Recorder as Recorder
from stellar_reconciler.fetcher import BatchSizing, build_batch
from stellar_reconciler.models import Batch, LedgerHeader
from stellar_reconciler.rpc import RetryPolicy
from tests.factories import ledger_hash, make_event


def round_trip(message: object) -> Any:
    """`message` as the other end of the pipe reads it."""
    return pickle.loads(pickle.dumps(message))  # noqa: S301 (our own bytes, made just above)


def batch_of(first: int, last: int) -> Batch:
    headers = [
        LedgerHeader(s, ledger_hash(s), ledger_hash(s - 1), 1_700_000_000 + 5 * s, 23)
        for s in range(first, last + 1)
    ]
    events = [make_event(first, 0), make_event(first, 1), make_event(last)]
    return build_batch(first, headers, events, ledger_hash(first - 1))


def test_a_batch_crosses_as_plain_tuples_and_comes_back_equal() -> None:
    """WireBatch carries events as plain tuples (they pickle in C) and rebuilds the Batch."""
    batch = batch_of(10, 12)
    wire = WireBatch.of(batch)
    assert all(type(event) is tuple for event in wire.events)
    assert round_trip(wire).batch() == batch


def test_attempts_ride_home_on_the_next_reply_once() -> None:
    """The recorder hands every attempt and retry to the next reply, then starts afresh."""
    recorder = Recorder()
    recorder.rpc_attempt("getEvents", "transient", 0.5, "HTTP 500")
    recorder.rpc_retry("getEvents")
    recorder.rpc_attempt("getEvents", "ok", 0.1, None)
    first = recorder.reply(batch_of(10, 10), None)
    assert first.attempts == [
        ("getEvents", "transient", 0.5, "HTTP 500"),
        ("getEvents", "ok", 0.1, None),
    ]
    assert first.retries == ["getEvents"]
    last = recorder.reply(None, None)
    assert (last.batch, last.error, last.attempts, last.retries) == (None, None, [], [])


def test_messages_cross_the_pipe_as_themselves() -> None:
    """The start message, a request and an error reply pickle and load equal, the error
    with its data (valid prefix included)."""
    config = FetchConfig("http://127.0.0.1:8000", RetryPolicy(), 5.0, "test", [[]])
    start = ChildStart(config, BatchSizing(max_ledgers=50))
    assert round_trip(start) == start
    request = FollowRange(10, 20, ledger_hash(9))
    assert round_trip(request) == request
    error = ChainBreakError(12, ledger_hash(11), "ff" * 32)
    error.valid_prefix = batch_of(10, 11)
    reply = round_trip(Reply(None, error))
    assert isinstance(reply.error, ChainBreakError)
    assert (reply.error.sequence, reply.error.expected, reply.error.found) == (
        12,
        ledger_hash(11),
        "ff" * 32,
    )
    assert reply.error.valid_prefix == error.valid_prefix
