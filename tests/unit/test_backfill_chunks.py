"""write_streamed: a chunk's batches read one at a time as its one transaction asks for them,
and a read that fails or a cancelled caller rolls that transaction back."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Iterator

import pytest

from stellar_reconciler.backfill_chunks import write_streamed


class Recorder:
    """A source of numbered batches and a writer of them, logging both in order."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.two_written = threading.Event()

    async def batches(
        self, count: int, fail_at: int | None = None, pause: float = 0.0
    ) -> AsyncGenerator[int, None]:
        try:
            for number in range(count):
                await asyncio.sleep(pause)
                if number == fail_at:
                    raise ValueError(f"batch {number} is unreadable")
                self.log.append(f"read {number}")
                yield number
        finally:
            self.log.append("source closed")

    def write(self, batches: Iterator[int]) -> int:
        written = 0
        try:
            for number in batches:
                self.log.append(f"wrote {number}")
                written += 1
                if written == 2:
                    self.two_written.set()
        except BaseException as exc:
            self.log.append(f"rolled back on {type(exc).__name__}")
            raise
        return written


async def test_each_batch_is_read_only_when_the_writer_asks_for_it() -> None:
    """Reads and writes alternate: no batch is read before the one before it is written."""
    recorder = Recorder()
    assert await write_streamed(recorder.write, recorder.batches(3)) == 3
    assert recorder.log == [
        "read 0",
        "wrote 0",
        "read 1",
        "wrote 1",
        "read 2",
        "wrote 2",
        "source closed",
    ]


async def test_a_batch_that_cannot_be_read_rolls_the_write_back_and_is_raised() -> None:
    """The reading error is raised inside the write (its transaction rolls back) and to the
    caller."""
    recorder = Recorder()
    with pytest.raises(ValueError, match="batch 1 is unreadable"):
        await write_streamed(recorder.write, recorder.batches(3, fail_at=1))
    assert recorder.log[-2:] == ["source closed", "rolled back on ValueError"]
    assert "wrote 1" not in recorder.log


async def test_a_cancelled_caller_rolls_the_write_back_before_it_returns() -> None:
    """Cancelled mid-chunk: the write stops at its next batch and rolls back, the source is
    closed, and only then does the cancellation reach the caller."""
    recorder = Recorder()
    task = asyncio.create_task(write_streamed(recorder.write, recorder.batches(1000, pause=0.01)))
    assert await asyncio.to_thread(recorder.two_written.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert recorder.log[-2:] == ["rolled back on CancelledError", "source closed"]
