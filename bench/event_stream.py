"""GET /api/events/stream under a catch-up: does a Server-Sent Events client keep up with the
worker, and how fast does a client replay a full store?

    python -m bench.event_stream [--ledgers 2000] [--events-per-ledger 50] [--clients 1,4]
                                 [--databases sqlite,postgres]

For each database and client count: the simulated network in its own process, `reconciler run`
on an empty database in another, and the clients (examples/sse_consumer.py's read_events, one
thread each) connected before the first batch. Timed: the catch-up (first checkpoint to the
tip) and, per client, when it had received the last event; then one fresh client replays the
whole store. Asserts nothing: it prints a table.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from examples.sse_consumer import read_events

from bench.databases import admin_url, fresh_database, postgres_available
from bench.service import running_service
from bench.simnet import running_simnet

CATCH_UP_TIMEOUT = 600.0


@dataclass(frozen=True)
class Result:
    database: str
    clients: int
    events: int
    catch_up_s: float
    stored_per_s: float
    streamed_per_s: float
    worst_behind_s: float
    all_received: bool
    replay_per_s: float
    errors: list[str]


@dataclass
class Client:
    """One stream reader: how many events it got and when it got the last one."""

    url: str
    received: int = 0
    in_order: bool = True
    finished_at: float | None = None
    error: str | None = None

    def run(self, last_id: list[str]) -> None:
        """Read until the event whose id `last_id[0]` names (set once the catch-up ends)."""
        previous = ""
        try:
            with httpx.Client(base_url=self.url, timeout=httpx.Timeout(10, read=60)) as http:
                for event_id, _ in read_events(http, {}):
                    self.in_order = self.in_order and event_id > previous
                    previous = event_id
                    self.received += 1
                    if last_id and event_id == last_id[0]:
                        self.finished_at = time.perf_counter()
                        return
        except httpx.HTTPError as exc:
            self.error = repr(exc)


def _wait_for_checkpoint(checkpoint: Callable[[], int | None], target: int) -> tuple[float, float]:
    """(when the first checkpoint showed, when it reached `target`), by perf_counter."""
    started = None
    deadline = time.monotonic() + CATCH_UP_TIMEOUT
    while time.monotonic() < deadline:
        ledger = checkpoint()
        now = time.perf_counter()
        if ledger is not None and started is None:
            started = now
        if ledger is not None and ledger >= target:
            return started or now, now
        time.sleep(0.01)
    raise RuntimeError(f"no catch-up to ledger {target} within {CATCH_UP_TIMEOUT:.0f}s")


def measure(
    database: str, clients: int, ledgers: int, events_per_ledger: int, workdir: Path
) -> Result:
    log = workdir / "bench-event-stream.log"
    with (
        running_simnet(ledgers, events_per_ledger, log=log) as net,
        fresh_database(database, workdir, admin_url()) as database_url,
        running_service(database_url, net.url, net.first_ledger, log) as service,
    ):
        last_id: list[str] = []
        readers = [Client(service.url) for _ in range(clients)]
        threads = [threading.Thread(target=r.run, args=(last_id,), daemon=True) for r in readers]
        for thread in threads:
            thread.start()
        began, ended = _wait_for_checkpoint(service.checkpoint, net.latest_ledger)
        newest = service.client.get(
            f"{service.url}/api/events", params={"order": "desc", "limit": 1}
        ).json()["events"]
        last_id.append(newest[0]["id"])
        for thread in threads:
            thread.join(CATCH_UP_TIMEOUT)
        stored = len(_all_ids(service.url))
        replay = Client(service.url)
        replay_start = time.perf_counter()
        replay.run(last_id)
        replay_seconds = (replay.finished_at or time.perf_counter()) - replay_start
    catch_up = ended - began
    behind = [
        (r.finished_at - ended) if r.finished_at is not None else float("nan") for r in readers
    ]
    return Result(
        database=database,
        clients=clients,
        events=stored,
        catch_up_s=catch_up,
        stored_per_s=stored / catch_up,
        streamed_per_s=min(
            (stored / ((r.finished_at or ended) - began) for r in readers), default=float("nan")
        ),
        worst_behind_s=max(behind, default=float("nan")),
        all_received=all(r.received == stored and r.in_order for r in readers),
        replay_per_s=replay.received / replay_seconds,
        errors=[r.error for r in readers if r.error],
    )


def _all_ids(url: str) -> list[str]:
    ids: list[str] = []
    cursor = None
    with httpx.Client(base_url=url, timeout=30) as http:
        while True:
            params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
            page = http.get("/api/events", params=params).json()
            ids.extend(e["id"] for e in page["events"])
            cursor = page["next_cursor"]
            if cursor is None:
                return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ledgers", type=int, default=2000)
    parser.add_argument("--events-per-ledger", type=int, default=50)
    parser.add_argument("--clients", default="0,1,4", help="0: the catch-up alone, to compare")
    parser.add_argument("--databases", default="sqlite,postgres")
    args = parser.parse_args()
    databases = args.databases.split(",")
    if "postgres" in databases and (why := postgres_available(admin_url())):
        print(f"skipping PostgreSQL: {why}")
        databases.remove("postgres")
    print(
        "| database | clients | events | catch-up s | stored ev/s | streamed ev/s (slowest) "
        "| last client done after tip, s | every event once, in order | replay ev/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    with tempfile.TemporaryDirectory(prefix="bench-sse-") as tmp:
        for database in databases:
            for clients in (int(c) for c in args.clients.split(",")):
                r = measure(database, clients, args.ledgers, args.events_per_ledger, Path(tmp))
                print(
                    f"| {r.database} | {r.clients} | {r.events:,} | {r.catch_up_s:.1f} "
                    f"| {r.stored_per_s:,.0f} | {r.streamed_per_s:,.0f} "
                    f"| {r.worst_behind_s:.2f} | {'yes' if r.all_received else 'NO'} "
                    f"| {r.replay_per_s:,.0f} |",
                    flush=True,
                )
                for error in r.errors:
                    print(f"  client error: {error}")


if __name__ == "__main__":
    main()
