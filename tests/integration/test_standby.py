"""Leader and standby as real processes on one PostgreSQL database; one writer per SQLite file."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.store import Store
from tests.conftest import PostgresTemplate
from tests.integration.harness import (
    network_event_ids,
    network_ledgers,
    service_env,
    settings_for,
    stored_event_ids,
    stored_ledgers,
    wait_for_sync,
)
from tests.integration.test_publisher import (
    OwnNats,
    consumer,
    names,
    received_ids,
)
from tests.loopback import closed_port

ADMIN = "standby-test-admin-token"


def checkpoint(database_url: str) -> int:
    store = Store.open(database_url)
    try:
        return store.checkpoint().ledger or 0
    finally:
        store.close()


def standing_still(database_url: str) -> bool:
    seen = checkpoint(database_url)
    time.sleep(3)
    return checkpoint(database_url) == seen


def event_count(database_url: str) -> int:
    return len(stored_event_ids(database_url))


class Replica:
    """One `reconciler run` on a fixed port, its log in a file (a pipe could fill and stall)."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str) -> None:
        self.port = closed_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.env = {
            **env,
            "BIND_ADDR": f"127.0.0.1:{self.port}",
            "ADVERTISE_URL": self.url,
            "ADMIN_TOKEN": ADMIN,
        }
        self.log_dir = log_dir
        self.name = name
        self.starts = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.starts += 1
        log = (self.log_dir / f"{self.name}-{self.starts}.log").open("wb")
        script = Path(sys.executable).parent / "reconciler"
        self.process = subprocess.Popen(
            [str(script), "run"], env=self.env, stdout=subprocess.DEVNULL, stderr=log
        )
        log.close()

    def log(self) -> str:
        return (self.log_dir / f"{self.name}-{self.starts}.log").read_text()

    def health(self) -> dict[str, Any] | None:
        try:
            body = httpx.get(self.url + "health", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return None
        return body if isinstance(body, dict) else None

    def role(self) -> str | None:
        body = self.health()
        return None if body is None else body.get("role")

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@contextmanager
def replicas(env: dict[str, str], log_dir: Path) -> Iterator[tuple[Replica, Replica]]:
    pair = (Replica(env, log_dir, "a"), Replica(env, log_dir, "b"))
    try:
        yield pair
    finally:
        for replica in pair:
            replica.stop()


@pytest.fixture
def postgres_url(postgres_template: PostgresTemplate) -> Iterator[str]:
    url = postgres_template.clone()
    yield url
    postgres_template.drop(url)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[OwnNats]:
    server = OwnNats(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.postgres
def test_standby_takes_over_after_each_of_five_sigkills(postgres_url: str, tmp_path: Path) -> None:
    """Five SIGKILLs of the leader mid catch-up: the standby takes over each time, every
    event is stored once, and the takeover times are written for the notes."""
    net = SimNetwork(
        SimNetConfig(seed=61, first_ledger=40_000, prebuilt_ledgers=4_000, events_per_ledger=40)
    )
    rng = random.Random(61)
    with serve_in_thread(net) as url:
        env = service_env(settings_for(postgres_url, url, batch_max_ledgers=40))
        first, last = 40_000, net.latest_ledger
        # Five kill points at random, spread over the catch-up.
        span = (last - first) // 6
        targets = [first + span * (i + 1) + rng.randrange(span // 2) for i in range(5)]
        takeovers: list[float] = []
        with replicas(env, tmp_path) as (a, b):
            a.start()
            wait_for_sync(lambda: a.role() == "leader", 60, "the first replica to lead")
            b.start()
            wait_for_sync(lambda: b.role() == "standby", 60, "the second to stand by")
            assert b.health() is not None and b.health()["leader"] == a.url  # type: ignore[index]
            leader, standby = a, b
            for target in targets:
                wait_for_sync(
                    lambda t=target: checkpoint(postgres_url) >= t, 180, f"ledger {target}"
                )
                leader.signal(signal.SIGKILL)
                killed_at = time.monotonic()
                assert leader.process is not None and leader.process.wait(10) == -signal.SIGKILL
                wait_for_sync(lambda s=standby: s.role() == "leader", 60, "the takeover")
                takeovers.append(time.monotonic() - killed_at)
                leader.start()
                wait_for_sync(lambda r=leader: r.role() == "standby", 60, "the restart")
                leader, standby = standby, leader
            wait_for_sync(lambda: checkpoint(postgres_url) == last, 300, "the last ledger")
            for replica in (a, b):
                replica.signal(signal.SIGTERM)
                assert replica.process is not None and replica.process.wait(30) == 0
    (tmp_path / "takeovers.json").write_text(json.dumps(takeovers))
    assert len(takeovers) == 5
    assert stored_ledgers(postgres_url) == network_ledgers(net, first, last)
    assert stored_event_ids(postgres_url) == network_event_ids(net, first, last)


@pytest.mark.postgres
def test_a_frozen_leader_writes_nothing_after_the_standby_took_over(
    postgres_url: str, tmp_path: Path
) -> None:
    """SIGSTOP the leader, let the standby take over, pause it, SIGCONT the old leader: the
    old one says it lost the lead and stands by, and the database does not change meanwhile."""
    net = SimNetwork(
        SimNetConfig(seed=62, first_ledger=50_000, prebuilt_ledgers=3_000, events_per_ledger=40)
    )
    with serve_in_thread(net) as url:
        env = service_env(settings_for(postgres_url, url, batch_max_ledgers=200))
        env.update({"LEADER_LEASE_SECS": "2", "VERIFY_EVERY_LEDGERS": "0"})
        with replicas(env, tmp_path) as (a, b):
            a.start()
            wait_for_sync(lambda: a.role() == "leader", 60, "the first replica to lead")
            b.start()
            wait_for_sync(lambda: b.role() == "standby", 60, "the second to stand by")
            wait_for_sync(lambda: checkpoint(postgres_url) >= 50_600, 120, "some progress")
            a.signal(signal.SIGSTOP)
            frozen_at = time.monotonic()
            wait_for_sync(lambda: b.role() == "leader", 60, "the takeover")
            (tmp_path / "takeover.json").write_text(json.dumps(time.monotonic() - frozen_at))
            # Let the new leader write a batch or two, then hold it still.
            moved = checkpoint(postgres_url)
            wait_for_sync(lambda: checkpoint(postgres_url) > moved, 60, "the new leader's batch")
            headers = {"Authorization": f"Bearer {ADMIN}"}
            assert httpx.post(b.url + "api/worker/pause", headers=headers).status_code == 200
            # A pause lets the batch in hand commit; wait until the checkpoint stands still.
            wait_for_sync(lambda: standing_still(postgres_url), 60, "the pause")
            before = (checkpoint(postgres_url), event_count(postgres_url))
            a.signal(signal.SIGCONT)
            wait_for_sync(lambda: "leadership_lost" in a.log(), 30, "the old leader to notice")
            wait_for_sync(lambda: a.role() == "standby", 30, "the old leader to stand by")
            assert (checkpoint(postgres_url), event_count(postgres_url)) == before
            assert (a.health() or {}).get("leader") == b.url
            assert httpx.post(b.url + "api/worker/resume", headers=headers).status_code == 200
            wait_for_sync(
                lambda: checkpoint(postgres_url) == net.latest_ledger, 300, "the last ledger"
            )
            b.signal(signal.SIGTERM)
            assert b.process is not None and b.process.wait(30) == 0
    assert stored_event_ids(postgres_url) == network_event_ids(net, 50_000, net.latest_ledger)


@pytest.mark.postgres
def test_admin_actions_on_a_standby_are_refused_naming_the_leader(
    postgres_url: str, tmp_path: Path
) -> None:
    """A standby answers 409 to an admin action, naming the leader; /health and /metrics say
    which replica leads."""
    net = SimNetwork(SimNetConfig(seed=63, first_ledger=1_000, prebuilt_ledgers=50))
    with serve_in_thread(net) as url:
        env = service_env(settings_for(postgres_url, url))
        with replicas(env, tmp_path) as (a, b):
            a.start()
            wait_for_sync(lambda: a.role() == "leader", 60, "the first replica to lead")
            b.start()
            wait_for_sync(lambda: b.role() == "standby", 60, "the second to stand by")
            wait_for_sync(lambda: (b.health() or {}).get("healthy"), 60, "a healthy standby")
            headers = {"Authorization": f"Bearer {ADMIN}"}
            refused = httpx.post(b.url + "api/worker/pause", headers=headers)
            assert refused.status_code == 409
            assert a.url in refused.json()["error"]
            assert httpx.post(a.url + "api/worker/pause", headers=headers).status_code == 200
            assert "reconciler_leader 1.0" in httpx.get(a.url + "metrics").text
            assert "reconciler_leader 0.0" in httpx.get(b.url + "metrics").text
            status = httpx.get(b.url + "api/status").json()
            assert status["role"] == "standby" and status["leader"] == a.url


def test_a_second_run_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    """On SQLite a second `reconciler run` on the same file stops at once with exit code 2 and
    names the process that holds it."""
    database_url = f"sqlite:///{tmp_path / 'one.db'}"
    net = SimNetwork(SimNetConfig(seed=64, first_ledger=1_000, prebuilt_ledgers=50))
    with serve_in_thread(net) as url:
        env = service_env(settings_for(database_url, url))
        with replicas(env, tmp_path) as (a, b):
            a.start()
            wait_for_sync(lambda: (a.health() or {}).get("healthy"), 60, "the first to run")
            b.start()
            assert b.process is not None
            assert b.process.wait(30) == 2
            assert a.process is not None
            message = b.log()
            assert "already used by another `reconciler run`" in message
            assert f"pid {a.process.pid}" in message
            assert a.process.poll() is None
    assert os.path.exists(tmp_path / "one.db.lock")


@pytest.mark.postgres
def test_a_consumer_gets_every_event_once_across_kills_a_nats_restart_and_failovers(
    postgres_url: str, nats_server: OwnNats, tmp_path: Path
) -> None:
    """Two replicas publishing to JetStream: three SIGKILLs of the leader (each a failover to
    the standby) and a NATS restart mid catch-up; the consumer gets every event exactly once."""
    stream, prefix = names()
    net = SimNetwork(
        SimNetConfig(seed=65, first_ledger=7_000, prebuilt_ledgers=2_000, events_per_ledger=20)
    )
    got = tmp_path / "got"
    own_nats = nats_server
    with serve_in_thread(net) as url, consumer(own_nats.url, stream, prefix, got):
        env = service_env(settings_for(postgres_url, url, batch_max_ledgers=40))
        env.update(NATS_URL=own_nats.url, NATS_STREAM=stream, NATS_SUBJECT_PREFIX=prefix)
        with replicas(env, tmp_path) as (a, b):
            a.start()
            wait_for_sync(lambda: a.role() == "leader", 60, "the first replica to lead")
            b.start()
            wait_for_sync(lambda: b.role() == "standby", 60, "the second to stand by")
            leader, standby = a, b
            for number, target in enumerate((7_300, 7_700, 8_100)):
                wait_for_sync(
                    lambda t=target: checkpoint(postgres_url) >= t, 180, f"ledger {target}"
                )
                if number == 1:
                    # NATS away for a while mid-stream, then back.
                    own_nats.stop()
                    time.sleep(2)
                    own_nats.start()
                leader.signal(signal.SIGKILL)
                assert leader.process is not None and leader.process.wait(10) == -signal.SIGKILL
                wait_for_sync(lambda s=standby: s.role() == "leader", 60, "the takeover")
                leader.start()
                wait_for_sync(lambda r=leader: r.role() == "standby", 60, "the restart")
                leader, standby = standby, leader
            wait_for_sync(lambda: checkpoint(postgres_url) == net.latest_ledger, 300, "catch-up")
            truth = network_event_ids(net, 7_000, net.latest_ledger)
            wait_for_sync(lambda: len(received_ids(got)) >= len(truth), 120, "delivery")
            # Anything sent twice would arrive right behind the rest.
            time.sleep(1.0)
    ids = received_ids(got)
    assert len(ids) == len(set(ids)), "an event was received twice"
    assert sorted(ids) == truth == stored_event_ids(postgres_url)
