"""Acknowledgements: JetStream's answers to a window of published messages, on one subscription.

nats-py's `publish_async` gives every message a future, a reply token and a parsed answer of
its own; that was more than half of the publisher's time per event. Here each message asks for
its answer at `<inbox>.<window>.<place>`, one subscription receives them all, and the publisher
learns how many from the front of the window were stored, and why the first one that was not
was refused. Answers to an older window (one given up on after a timeout) are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from nats.aio.msg import Msg


class Acknowledgements:
    """JetStream's answers to one window of messages, gathered on one subscription.

    Message `i` of window `w` asks for its answer at `<inbox>.<w>.<i>`; answers to an older
    window (one given up on after a timeout) are ignored by their window number."""

    def __init__(self, inbox: str) -> None:
        self.inbox = inbox
        self.window = 0
        self._size = 0
        self._answered = 0
        self._failures: dict[int, str] = {}
        self._acked: list[bool] = []
        # Places whose message was already in the stream (dropped as a duplicate).
        self._duplicates: set[int] = set()
        self._all_in = asyncio.Event()

    def open(self, size: int) -> str:
        """Start a new window of `size` messages; returns the reply-subject prefix to use."""
        self.window += 1
        self._size = size
        self._answered = 0
        self._failures = {}
        self._acked = [False] * size
        self._duplicates = set()
        self._all_in = asyncio.Event()
        if size == 0:
            self._all_in.set()
        return f"{self.inbox}.{self.window}."

    async def on_reply(self, msg: Msg) -> None:
        window, _, index = msg.subject[len(self.inbox) + 1 :].partition(".")
        if window != str(self.window) or not index.isdigit() or int(index) >= self._size:
            return
        place = int(index)
        if self._acked[place] or place in self._failures:
            return
        problem = _ack_problem(msg)
        if problem is None:
            self._acked[place] = True
            if _duplicate(msg.data):
                self._duplicates.add(place)
        else:
            self._failures[place] = problem
        self._answered += 1
        if self._answered >= self._size:
            self._all_in.set()

    async def gathered(self, within: float) -> tuple[int, str | None]:
        """(How many from the front were acknowledged, why the next one was not), once all
        are answered or `within` seconds have passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_in.wait(), within)
        count = 0
        for acked in self._acked:
            if not acked:
                break
            count += 1
        if count == self._size:
            return count, None
        why = self._failures.get(count, f"no acknowledgement within {within:g}s")
        return count, why

    @property
    def last_stored(self) -> bool:
        """Whether the window's last message was acknowledged as newly stored (not dropped as
        a duplicate): its id is then the stream's last message id."""
        last = self._size - 1
        return last >= 0 and self._acked[last] and last not in self._duplicates


def _ack_problem(msg: Msg) -> str | None:
    """None for a JetStream acknowledgement; otherwise what the answer says went wrong."""
    data = msg.data
    # The usual answer, {"stream":"S","seq":N} (maybe with "duplicate":true), is recognised
    # without parsing: the publisher reads one per event.
    fast = not msg.headers and data.startswith(b'{"stream":') and b'"seq":' in data
    if fast and b'"error"' not in data:
        return None
    status = (msg.headers or {}).get("Status")
    if status and status != "200":
        said = (msg.headers or {}).get("Description", "no stream takes this subject")
        return f"NATS answered status {status} ({said})"
    try:
        answer = json.loads(msg.data)
    except ValueError:
        return f"JetStream answered something that is not JSON: {msg.data[:80]!r}"
    if not isinstance(answer, dict) or "error" in answer or "seq" not in answer:
        error = answer.get("error") if isinstance(answer, dict) else answer
        return f"JetStream refused the message: {error}"
    return None


def _duplicate(data: bytes) -> bool:
    """Whether an acknowledgement says the message was already in the stream (the server
    writes `"duplicate": true`; parsed only when the word is there at all)."""
    if b'"duplicate"' not in data:
        return False
    try:
        answer = json.loads(data)
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("duplicate") is True
