"""Events pushed to NATS JetStream: each received once by a durable consumer (the example in
examples/nats_consumer.py), across SIGKILLs of the service and a NATS outage.

The machine's nats-server (127.0.0.1:4222, JetStream on) serves the SIGKILL test, each test on
its own stream and subject prefix; the outage test starts and stops a nats-server of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest

from stellar_reconciler.expectation_spec import ExpectationSpec
from stellar_reconciler.publisher import NatsPublisher
from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from stellar_reconciler.status import ServiceStatus
from stellar_reconciler.store import Store
from tests.factories import CONTRACT, make_batch
from tests.integration.harness import (
    network_event_ids,
    running_service,
    service_env,
    settings_for,
    stored_event_ids,
    wait_for,
    wait_for_sync,
)

REPO = Path(__file__).resolve().parents[2]
CONSUMER = REPO / "examples" / "nats_consumer.py"
SYSTEM_NATS = "nats://127.0.0.1:4222"


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _missing(message: str) -> None:
    """Skip without NATS, or fail when REQUIRE_NATS=1 (as CI sets)."""
    message = f"{message}; set REQUIRE_NATS=1 to make this a failure"
    if os.environ.get("REQUIRE_NATS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def system_nats() -> str:
    if not _listening(4222):
        _missing("no nats-server on 127.0.0.1:4222 (.ci/run starts one: nats-server -js)")
    return SYSTEM_NATS


def names() -> tuple[str, str]:
    """A stream name and a subject prefix no other test uses."""
    tag = uuid.uuid4().hex[:12]
    return f"TEST_{tag}", f"test{tag}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnNats:
    """A nats-server of this test's own (JetStream, files in `store_dir`), started and stopped
    at will on one port; never the machine's."""

    def __init__(self, store_dir: Path) -> None:
        self.port = _free_port()
        self.store_dir = store_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("nats-server")
        if binary is None:
            _missing("nats-server is not installed (Debian package nats-server)")
            return
        self.process = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_sync(lambda: _listening(self.port), 10, "the test's nats-server")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # A clean stop: JetStream acknowledges a message before it reaches the disk.
            self.process.terminate()
            self.process.wait(15)
        self.process = None


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[OwnNats]:
    server = OwnNats(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def consumer(url: str, stream: str, prefix: str, out: Path) -> Iterator[Path]:
    """The example consumer as a child process; its lines go to `out`."""
    with out.open("wb") as sink, out.with_suffix(".err").open("wb") as errors:
        process = subprocess.Popen(
            [
                sys.executable,
                str(CONSUMER),
                "--url",
                url,
                "--stream",
                stream,
                "--durable",
                "test",
                "--subject",
                f"{prefix}.>",
            ],
            stdout=sink,
            stderr=errors,
        )
        try:
            yield out
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def received(out: Path) -> list[dict[str, object]]:
    text = out.read_text() if out.exists() else ""
    # The last line may be half written; it is read whole next time.
    lines = text.split("\n")[:-1]
    return [json.loads(line) for line in lines if line.startswith("{")]


def received_ids(out: Path) -> list[str]:
    return [str(item["id"]) for item in received(out)]


def outbox_count(database_url: str) -> int:
    store = Store.open(database_url)
    try:
        return store.outbox.pending_count()
    finally:
        store.close()


def checkpoint(database_url: str) -> int:
    store = Store.open(database_url)
    try:
        return store.checkpoint().ledger or 0
    finally:
        store.close()


@contextlib.contextmanager
def service_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`reconciler run` as a child whose log goes to a file (a pipe nobody reads would fill)."""
    script = Path(sys.executable).parent / "reconciler"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [str(script), "run"], env=env, stdout=subprocess.DEVNULL, stderr=sink
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(10)


def test_every_event_once_across_sigkills(
    database_url: str, system_nats: str, tmp_path: Path
) -> None:
    """Three SIGKILLs of `reconciler run` mid catch-up: the consumer gets every event once."""
    stream, prefix = names()
    net = SimNetwork(
        SimNetConfig(seed=21, first_ledger=5_000, prebuilt_ledgers=1_500, events_per_ledger=20)
    )
    truth_holder: list[str] = []
    with serve_in_thread(net) as url, consumer(system_nats, stream, prefix, tmp_path / "got"):
        env = service_env(settings_for(database_url, url, batch_max_ledgers=40))
        env.update(NATS_URL=system_nats, NATS_STREAM=stream, NATS_SUBJECT_PREFIX=prefix)
        for target in (5_300, 5_700, 6_100):
            with service_process(env, tmp_path / "service.log") as process:
                wait_for_sync(
                    lambda t=target: checkpoint(database_url) >= t, 120, f"ledger {target}"
                )
                process.send_signal(signal.SIGKILL)
                assert process.wait(10) == -signal.SIGKILL
        with service_process(env, tmp_path / "service.log") as process:
            wait_for_sync(lambda: checkpoint(database_url) == net.latest_ledger, 120, "catch-up")
            truth_holder = network_event_ids(net, 5_000, net.latest_ledger)
            wait_for_sync(lambda: outbox_count(database_url) == 0, 60, "an empty outbox")
            wait_for_sync(
                lambda: len(received_ids(tmp_path / "got")) >= len(truth_holder), 60, "delivery"
            )
            # Anything sent twice would arrive right behind the rest.
            time.sleep(1.0)
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
    ids = received_ids(tmp_path / "got")
    assert len(ids) == len(set(ids)), "an event was received twice"
    assert sorted(ids) == truth_holder == stored_event_ids(database_url)


async def test_every_event_once_in_order_across_a_nats_outage(
    database_url: str, own_nats: OwnNats, tmp_path: Path
) -> None:
    """NATS down mid-stream: ingestion goes on, the outbox grows, health and the metric say so;
    when NATS is back the consumer gets every event once, in order."""
    stream, prefix = names()
    net = SimNetwork(
        SimNetConfig(seed=22, first_ledger=800, prebuilt_ledgers=300, events_per_ledger=10)
    )
    got = tmp_path / "got"
    with serve_in_thread(net) as url, consumer(own_nats.url, stream, prefix, got):
        settings = settings_for(
            database_url,
            url,
            batch_max_ledgers=50,
            nats_url=own_nats.url,
            nats_stream=stream,
            nats_subject_prefix=prefix,
        )
        async with running_service(settings) as (service, base):
            before = network_event_ids(net, 800, net.latest_ledger)
            await wait_for(lambda: len(received_ids(got)) >= len(before), 60, "first delivery")
            own_nats.stop()
            net.close_ledgers(200)
            await wait_for(
                lambda: service.status.last_processed_ledger == net.latest_ledger,
                60,
                "ingestion without NATS",
            )

            async def health_says_so() -> bool:
                async with httpx.AsyncClient() as client:
                    body = (await client.get(f"{base}/health")).json()
                return body["status"] == "degraded" and "NATS" in str(body["reason"])

            deadline = time.monotonic() + 30
            while not await health_says_so():
                assert time.monotonic() < deadline, "health never named the NATS outage"
                await asyncio.sleep(0.1)
            pending = service.store.outbox.pending_count()
            assert pending >= len(network_event_ids(net, 1_100, net.latest_ledger))
            registry = service.metrics.registry
            await wait_for(
                lambda: (registry.get_sample_value("reconciler_nats_outbox_pending") or 0) > 0,
                30,
                "the outbox metric",
            )
            own_nats.start()
            truth = network_event_ids(net, 800, net.latest_ledger)
            await wait_for(lambda: len(received_ids(got)) >= len(truth), 90, "delivery after")
            await wait_for(lambda: service.status.publishing_failure is None, 30, "recovery")
            await wait_for(lambda: service.store.outbox.pending_count() == 0, 30, "empty outbox")
    ids = received_ids(got)
    assert ids == truth


async def test_a_settled_record_and_its_discrepancy_are_published_once(
    database_url: str, system_nats: str, tmp_path: Path
) -> None:
    """An expected record that never arrives settles missing_expected: the record reaches
    PREFIX.expectations and the discrepancy PREFIX.discrepancies, each once."""
    stream, prefix = names()
    net = SimNetwork(SimNetConfig(seed=23, first_ledger=50, prebuilt_ledgers=60))
    store = Store.open(database_url)
    try:
        store.expectations.create(
            [
                ExpectationSpec.model_validate(
                    {
                        "external_id": "order-1",
                        "contract_id": CONTRACT,
                        "event_name": "transfer",
                        "deadline_ledger": 60,
                    }
                )
            ]
        )
    finally:
        store.close()
    got = tmp_path / "got"
    with serve_in_thread(net) as url, consumer(system_nats, stream, prefix, got):
        settings = settings_for(
            database_url,
            url,
            nats_url=system_nats,
            nats_stream=stream,
            nats_subject_prefix=prefix,
        )
        async with running_service(settings) as (service, _):

            def on(subject: str) -> list[dict[str, object]]:
                return [m for m in received(got) if m["subject"] == f"{prefix}.{subject}"]

            await wait_for(lambda: on("discrepancies") and on("expectations"), 60, "both")
            [opened] = service.store.discrepancies.listing(kind="missing_expected")
            record = service.store.expectations.get("order-1")
            assert record is not None and record["status"] == "missing_expected"
            await wait_for(lambda: service.store.expectations.unpublished(10) == [], 10, "mark")
            await asyncio.sleep(1.5)  # a second publication would arrive within this
    assert [m["id"] for m in on("discrepancies")] == [f"discrepancy-{opened['id']}"]
    [published] = on("expectations")
    assert str(published["id"]).startswith("expectation-") and "missing_expected" in str(
        published["id"]
    )


async def test_messages_sent_again_after_a_crash_are_dropped_by_the_stream(
    store: Store, system_nats: str
) -> None:
    """Acknowledged but not yet deleted (a crash before the outbox's delete): a new publisher
    sends them again, and the stream keeps one copy of each (Nats-Msg-Id)."""
    stream, prefix = names()
    store.outbox.enabled = True
    store.ensure_stream(10, "fp")
    store.commit_batch(make_batch(10, 19, events_per_ledger=3))
    # No timed delete: the outbox keeps what was sent until flush() (which never comes).
    first = NatsPublisher(store, ServiceStatus(), system_nats, stream, prefix, flush_secs=3600)
    await first._connect()
    try:
        assert await first.publish_pending() == 30
    finally:
        await first._close()  # "crashes": what it sent is still in the outbox
    assert store.outbox.pending_count() == 30
    second = NatsPublisher(store, ServiceStatus(), system_nats, stream, prefix)
    await second._connect()
    try:
        assert await second.publish_pending() == 30
        await second.flush()
    finally:
        await second._close()
    assert store.outbox.pending_count() == 0
    nc = await nats.connect(system_nats)
    try:
        js = nc.jetstream()
        assert (await js.stream_info(stream)).state.messages == 30
        await js.delete_stream(stream)
    finally:
        await nc.close()


async def test_windows_are_chained_and_a_broken_chain_is_sent_again_one_by_one(
    store: Store, system_nats: str
) -> None:
    """After one window acknowledged message by message, the next go with one acknowledgement
    each, chained by Nats-Expected-Last-Msg-Id; a message another client writes into the
    stream in between breaks the chain, and that window is sent again one by one. The stream
    then holds every event once, in order, with the other message where it came."""
    stream, prefix = names()
    store.outbox.enabled = True
    store.ensure_stream(10, "fp")
    batch = make_batch(10, 19, events_per_ledger=4)
    store.commit_batch(batch)
    publisher = NatsPublisher(store, ServiceStatus(), system_nats, stream, prefix, batch=10)
    nc = await nats.connect(system_nats)
    await publisher._connect()
    try:
        js = nc.jetstream()
        assert await publisher.publish_pending() == 10
        assert await publisher.publish_pending() == 10
        assert (publisher.chained_windows, publisher.broken_chains) == (1, 0)
        await js.publish(f"{prefix}.other", b"{}", headers={"Nats-Msg-Id": "other-1"})
        assert await publisher.publish_pending() == 10
        assert (publisher.chained_windows, publisher.broken_chains) == (1, 1)
        assert await publisher.publish_pending() == 10
        assert (publisher.chained_windows, publisher.broken_chains) == (2, 1)
        info = await js.stream_info(stream)
        stored = [
            (await js.get_msg(stream, seq)).headers or {}
            for seq in range(1, info.state.last_seq + 1)
        ]
        ids = [event.id for event in batch.events]
        assert [h.get("Nats-Msg-Id") for h in stored] == [*ids[:20], "other-1", *ids[20:]]
        await js.delete_stream(stream)
    finally:
        await publisher._close()
        await nc.close()


def _publishing_children(log: Path) -> list[int]:
    """The pids of the publishing children the service started, in order, from its log."""
    pids = []
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("event") == "child_started" and entry.get("job") == "publish_process":
                pids.append(int(entry["pid"]))
    return pids


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie (exited, not yet reaped by init) counts as gone.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_the_publishing_child_is_started_again_and_never_outlives_the_service(
    database_url: str, system_nats: str, tmp_path: Path
) -> None:
    """The publisher runs in a child of the service: SIGKILLed mid catch-up it is started
    again and the consumer still gets every event once; the service SIGKILLed, the child
    sees its pipe end and leaves by itself."""
    stream, prefix = names()
    net = SimNetwork(
        SimNetConfig(seed=27, first_ledger=5_000, prebuilt_ledgers=800, events_per_ledger=20)
    )
    log = tmp_path / "service.log"
    with serve_in_thread(net) as url, consumer(system_nats, stream, prefix, tmp_path / "got"):
        env = service_env(settings_for(database_url, url, batch_max_ledgers=40))
        env.update(NATS_URL=system_nats, NATS_STREAM=stream, NATS_SUBJECT_PREFIX=prefix)
        truth = network_event_ids(net, 5_000, net.latest_ledger)
        with service_process(env, log) as process:
            wait_for_sync(lambda: received_ids(tmp_path / "got"), 120, "the first events")
            [first] = _publishing_children(log)
            os.kill(first, signal.SIGKILL)
            wait_for_sync(lambda: len(_publishing_children(log)) == 2, 60, "a new child")
            wait_for_sync(lambda: checkpoint(database_url) == net.latest_ledger, 120, "catch-up")
            wait_for_sync(lambda: len(received_ids(tmp_path / "got")) >= len(truth), 60, "all")
            second = _publishing_children(log)[1]
            process.send_signal(signal.SIGKILL)
            assert process.wait(10) == -signal.SIGKILL
            wait_for_sync(lambda: _gone(second), 15, "the orphaned child to leave")
        # Anything sent twice would arrive right behind the rest.
        time.sleep(1.0)
    ids = received_ids(tmp_path / "got")
    assert len(ids) == len(set(ids)), "an event was received twice"
    assert sorted(ids) == truth == stored_event_ids(database_url)
