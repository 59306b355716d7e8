"""JetStream answers gathered per window: only an unbroken run from the front counts."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from nats.aio.msg import Msg

from stellar_reconciler.acknowledgements import Acknowledgements

INBOX = "_INBOX.test"


def answer(prefix: str, place: int, body: Any, headers: dict[str, str] | None = None) -> Msg:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Msg(cast(Any, None), subject=f"{prefix}{place}", data=data, headers=headers)


def stored(seq: int) -> dict[str, Any]:
    return {"stream": "s", "seq": seq}


async def gather(acks: Acknowledgements, replies: list[Msg]) -> tuple[int, str | None]:
    for msg in replies:
        await acks.on_reply(msg)
    return await acks.gathered(0.05)


def test_answers_in_any_order_count_once_all_are_in() -> None:
    """Acknowledgements arriving out of order still count the whole window."""
    acks = Acknowledgements(INBOX)
    prefix = acks.open(3)
    replies = [answer(prefix, i, stored(i + 1)) for i in (2, 0, 1)]
    assert asyncio.run(gather(acks, replies)) == (3, None)


def test_a_refusal_stops_the_count_and_says_why() -> None:
    """A JetStream error answer ends the run from the front and its text is the reason."""
    acks = Acknowledgements(INBOX)
    prefix = acks.open(3)
    refused = {"error": {"code": 503, "description": "stream full"}}
    replies = [answer(prefix, 0, stored(1)), answer(prefix, 1, refused)]
    replies.append(answer(prefix, 2, stored(2)))
    count, why = asyncio.run(gather(acks, replies))
    assert count == 1
    assert why is not None and "stream full" in why


def test_a_no_responders_status_is_a_failure() -> None:
    """A 503 status header (no stream takes the subject) is not an acknowledgement."""
    acks = Acknowledgements(INBOX)
    prefix = acks.open(1)
    replies = [answer(prefix, 0, b"", {"Status": "503"})]
    count, why = asyncio.run(gather(acks, replies))
    assert count == 0
    assert why is not None and "503" in why


def test_a_missing_answer_times_out_with_the_count_before_it() -> None:
    """Without an answer for place 1, only place 0 counts and the reason names the wait."""
    acks = Acknowledgements(INBOX)
    prefix = acks.open(3)
    replies = [answer(prefix, 0, stored(1)), answer(prefix, 2, stored(3))]
    count, why = asyncio.run(gather(acks, replies))
    assert count == 1
    assert why is not None and "no acknowledgement" in why


def test_answers_to_an_older_window_are_ignored() -> None:
    """A late answer to a window given up on cannot count for the current one."""
    acks = Acknowledgements(INBOX)
    old = acks.open(1)
    prefix = acks.open(1)
    count, _ = asyncio.run(gather(acks, [answer(old, 0, stored(1))]))
    assert count == 0
    assert asyncio.run(gather(acks, [answer(prefix, 0, stored(2))])) == (1, None)


def test_garbage_and_duplicates_do_not_count_twice() -> None:
    """Non-JSON is a failure; a second answer for one place does not complete the window."""
    acks = Acknowledgements(INBOX)
    prefix = acks.open(2)
    replies = [answer(prefix, 0, stored(1)), answer(prefix, 0, stored(1)), answer(prefix, 1, b"<")]
    count, why = asyncio.run(gather(acks, replies))
    assert count == 1
    assert why is not None and "not JSON" in why


def test_last_stored_tells_a_new_message_from_a_duplicate() -> None:
    """The window's last message counts as stored only when its answer is not a duplicate
    (the server writes `"duplicate": true`, with a space), nor an error, nor missing."""
    for body, expected in (
        (b'{"stream":"S","seq":7}', True),
        (b'{"stream":"S","seq":7,"duplicate": true}', False),
        (b'{"stream":"duplicate","seq":7}', True),
        (b'{"error":{"code":400,"description":"wrong last msg ID: x"}}', False),
    ):
        acks = Acknowledgements(INBOX)
        prefix = acks.open(2)
        asyncio.run(gather(acks, [answer(prefix, 0, stored(6)), answer(prefix, 1, body)]))
        assert acks.last_stored is expected, body
    acks = Acknowledgements(INBOX)
    acks.open(1)
    assert not acks.last_stored
