"""The live stream's pure parts: the ?token= check and when snapshots are sent."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from stellar_reconciler.api.live import snapshots, token_allows_read
from stellar_reconciler.status import ServiceStatus

READ = "read-token-0123456789"
ADMIN = "admin-token-0123456789"


@pytest.mark.parametrize(
    ("token", "read_token", "admin_token", "allowed"),
    [
        (READ, READ, ADMIN, True),
        (ADMIN, READ, ADMIN, True),
        ("someone-else-0123", READ, ADMIN, False),
        ("", READ, "", False),
        ("", "", "", False),
        (READ[:-1], READ, ADMIN, False),
    ],
)
def test_token_parameter_must_be_the_read_or_admin_token(
    token: str, read_token: str, admin_token: str, allowed: bool
) -> None:
    """?token= opens the stream with the read or the admin token, never with an empty one."""
    assert token_allows_read(token, read_token, admin_token) is allowed


class CountingSource:
    """A SnapshotSource stand-in: its snapshots are numbered builds of the status version."""

    def __init__(self) -> None:
        self.status = ServiceStatus()
        self.ctx = SimpleNamespace(
            status=self.status, telemetry=SimpleNamespace(interval=0.2, samples=list)
        )
        self.closing = False
        self.builds = 0

    def state_key(self) -> tuple[int, None]:
        return self.status.version, None

    async def current(self) -> tuple[tuple[int, None], dict[str, Any]]:
        self.builds += 1
        return self.state_key(), {"version": self.status.version, "build": self.builds}


async def next_snapshot(stream: Any) -> dict[str, Any]:
    return dict(await asyncio.wait_for(anext(stream), 5))


async def test_first_snapshot_at_once_then_one_per_change() -> None:
    """A client gets a snapshot on connect and another after each change of the version."""
    source = CountingSource()
    stream = snapshots(source)  # type: ignore[arg-type]
    assert (await next_snapshot(stream))["version"] == 0
    source.status.notify()
    assert (await next_snapshot(stream))["version"] == 1
    await stream.aclose()


async def test_a_burst_of_changes_becomes_one_snapshot_of_the_last_state() -> None:
    """Changes closer together than the minimum gap are sent as one snapshot of the latest."""
    source = CountingSource()
    stream = snapshots(source)  # type: ignore[arg-type]
    await next_snapshot(stream)
    for _ in range(5):
        source.status.notify()
    assert await next_snapshot(stream) == {"version": 5, "build": 2}
    await stream.aclose()


async def test_closing_ends_the_stream() -> None:
    """Once the source is closing, a waiting stream ends instead of waiting for a change."""
    source = CountingSource()
    stream = snapshots(source)  # type: ignore[arg-type]
    await next_snapshot(stream)
    source.closing = True
    with pytest.raises(StopAsyncIteration):
        await next_snapshot(stream)
