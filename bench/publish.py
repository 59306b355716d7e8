"""Does publishing to NATS keep up with catch-up? Events/s stored and published, per database.

    python -m bench.publish [--ledgers 2000] [--events-per-ledger 50] [--databases sqlite,postgres]

For each database: a catch-up of the simulated history with NATS_URL off (what the outbox
costs is the difference), then one with it on, timed from the first checkpoint the service
reports until (a) the checkpoint reaches the tip (stored) and (b) the stream holds every event
(published). The stream (a fresh name per run, deleted afterwards) lives on the nats-server at
--nats (127.0.0.1:4222 by default). Prints a table; asserts nothing.

Whether the publisher keeps up or falls behind is read from its delay: at each poll, the
ledger of the stream's last message, and how long before that poll the checkpoint had
reached that ledger. A publisher slower than storing has a delay that grows through the run;
one that keeps up has a delay that stays flat. The table gives the delay's median and maximum
in each quarter of the catch-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.js.errors

from bench.databases import admin_url, fresh_database, postgres_available
from bench.service import running_service
from bench.simnet import Simnet, running_simnet
from stellar_reconciler.config import sqlalchemy_url
from stellar_reconciler.store import Store

POLL_SECONDS = 0.05
TIMEOUT_SECONDS = 1800.0


async def _measure(
    service_url: str, tip: int, nats_url: str | None, stream: str, database_url: str
) -> dict[str, Any]:
    nc = await nats.connect(nats_url) if nats_url else None
    js = nc.jetstream() if nc is not None else None
    started = stored_at = published_at = None
    total = in_stream_when_stored = None
    published = 0
    # (poll time, checkpoint, ledger of the stream's last message) while catch-up runs.
    samples: list[tuple[float, int, int | None]] = []
    deadline = time.monotonic() + TIMEOUT_SECONDS
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            while time.monotonic() < deadline:
                health = (await client.get(f"{service_url}/health")).json()
                checkpoint = health.get("last_processed_ledger")
                last_ledger = None
                if js is not None:
                    try:
                        state = (await js.stream_info(stream)).state
                    except nats.js.errors.NotFoundError:
                        published = 0
                    else:
                        published = state.messages
                        last_ledger = await _ledger_of(js, stream, state.last_seq)
                now = time.monotonic()
                if started is None and checkpoint is not None:
                    started = now
                if checkpoint is not None and stored_at is None:
                    samples.append((now, int(checkpoint), last_ledger))
                if stored_at is None and checkpoint == tip:
                    stored_at = now
                    in_stream_when_stored = published
                    total = await asyncio.to_thread(_event_count, database_url)
                if total is not None and published >= total and published_at is None:
                    published_at = now
                if stored_at is not None and (js is None or published_at is not None):
                    break
                await asyncio.sleep(POLL_SECONDS)
        if js is not None:
            await js.delete_stream(stream)
    finally:
        if nc is not None:
            await nc.close()
    if started is None or stored_at is None:
        raise RuntimeError(f"the catch-up did not finish within {TIMEOUT_SECONDS:.0f}s")
    return {
        "events": total,
        "stored_secs": stored_at - started,
        "published_secs": (published_at - started) if published_at is not None else None,
        "published": published,
        "published_when_stored": in_stream_when_stored,
        "delay_quarters": _delay_quarters(samples) if js is not None else None,
    }


async def _ledger_of(js: Any, stream: str, seq: int) -> int | None:
    if not seq:
        return None
    try:
        message = await js.get_msg(stream, seq)
    except nats.js.errors.NotFoundError:
        return None
    return int(json.loads(message.data)["ledger"])


def _delay_quarters(
    samples: list[tuple[float, int, int | None]],
) -> list[tuple[float, float] | None]:
    """Per quarter of the catch-up, the median and largest delay of the stream behind storing:
    the time between the checkpoint reaching a ledger and that ledger's last event being in
    the stream."""
    reached: list[tuple[int, float]] = []  # (checkpoint, first time seen), ascending
    delays: list[tuple[float, float]] = []
    for now, checkpoint, in_stream in samples:
        if not reached or checkpoint > reached[-1][0]:
            reached.append((checkpoint, now))
        # Nothing in the stream yet: behind since the first checkpoint.
        since = (
            reached[0][1]
            if in_stream is None
            else next((at for ledger, at in reached if ledger >= in_stream), now)
        )
        delays.append((now, now - since))
    if not delays:
        return []
    first, last = samples[0][0], samples[-1][0]
    quarters: list[list[float]] = [[], [], [], []]
    for now, delay in delays:
        quarters[min(3, int(4 * (now - first) / max(last - first, 1e-9)))].append(delay)
    return [(statistics.median(q), max(q)) if q else None for q in quarters]


def _event_count(database_url: str) -> int:
    store = Store.open(sqlalchemy_url(database_url))
    try:
        return store.event_count()
    finally:
        store.close()


def run_one(net: Simnet, kind: str, workdir: Path, nats_url: str | None) -> dict[str, Any]:
    stream, prefix = f"BENCH_{uuid.uuid4().hex[:10]}", f"bench{uuid.uuid4().hex[:10]}"
    settings = {"nats_url": nats_url or "", "nats_stream": stream, "nats_subject_prefix": prefix}
    with (
        fresh_database(kind, workdir, admin_url()) as database_url,
        running_service(
            database_url, net.url, net.first_ledger, workdir / "service.log", **settings
        ) as service,
    ):
        return asyncio.run(_measure(service.url, net.latest_ledger, nats_url, stream, database_url))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledgers", type=int, default=2000)
    parser.add_argument("--events-per-ledger", type=int, default=50)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    kinds = [k for k in args.databases.split(",") if k]
    if "postgres" in kinds and postgres_available(admin_url()) is not None:
        print("PostgreSQL not available: measuring SQLite only")
        kinds = [k for k in kinds if k != "postgres"]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with running_simnet(
            args.ledgers, args.events_per_ledger, log=workdir / "simnet.log"
        ) as net:
            for kind in kinds:
                off = run_one(net, kind, workdir, None)
                on = run_one(net, kind, workdir, args.nats)
                results[kind] = {"nats_off": off, "nats_on": on}
    print("| | " + " | ".join(kinds) + " |")
    print("|---|" + "---:|" * len(kinds))
    rows = [
        ("events", lambda r: f"{r['nats_on']['events']:,}"),
        ("stored events/s, NATS off", lambda r: _rate(r["nats_off"], "stored_secs")),
        ("stored events/s, NATS on", lambda r: _rate(r["nats_on"], "stored_secs")),
        ("published events/s (all in the stream)", lambda r: _rate(r["nats_on"], "published_secs")),
        ("in the stream when catch-up ended", lambda r: _share(r["nats_on"])),
        ("published after catch-up ended, s", lambda r: _after(r["nats_on"])),
        *((f"stream delay in quarter {n + 1}, median / max s", _quarter(n)) for n in range(4)),
    ]
    for label, cell in rows:
        print(f"| {label} | " + " | ".join(cell(results[k]) for k in kinds) + " |")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


def _rate(run: dict[str, Any], key: str) -> str:
    seconds = run.get(key)
    return f"{run['events'] / seconds:,.0f}" if seconds else "n/a"


def _share(run: dict[str, Any]) -> str:
    done = run.get("published_when_stored") or 0
    return f"{100 * done / run['events']:.0f}%" if run["events"] else "n/a"


def _quarter(n: int) -> Any:
    def cell(run: dict[str, Any]) -> str:
        quarters = run["nats_on"].get("delay_quarters") or []
        if len(quarters) <= n or quarters[n] is None:
            return "n/a"
        median, largest = quarters[n]
        return f"{median:.2f} / {largest:.2f}"

    return cell


def _after(run: dict[str, Any]) -> str:
    if run.get("published_secs") is None:
        return "n/a"
    return f"{run['published_secs'] - run['stored_secs']:.1f}"


if __name__ == "__main__":
    main()
