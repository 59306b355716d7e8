"""Webhooks to a real HTTP receiver on loopback: signed, retried, never blocking ingestion."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from tests.integration.harness import running_service, settings_for, wait_for

SECRET = "webhook-secret-0123456789"


class Receiver:
    """A webhook endpoint that refuses the first `failures` deliveries, then accepts."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[dict[str, Any]] = []
        self.refused = 0
        self.lock = threading.Lock()


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver(failures=2)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            with state.lock:
                if state.refused < state.failures:
                    state.refused += 1
                    self.send_response(503)
                    self.end_headers()
                    return
                state.received.append({"headers": dict(self.headers), "body": body})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


async def test_new_discrepancy_is_posted_signed_after_retries(
    database_url: str, receiver: tuple[Receiver, str]
) -> None:
    """A chain break is delivered once accepted, after two refusals, with a valid HMAC."""
    state, url_hook = receiver
    net = SimNetwork(SimNetConfig(seed=61, first_ledger=50, prebuilt_ledgers=60))
    net.break_chain_at(80)
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, webhook_urls=url_hook, webhook_secret=SECRET)
        async with running_service(settings) as (service, _):
            await wait_for(lambda: state.received, within=60, what="a delivered webhook")
            [delivery] = state.received
            headers = {k.lower(): v for k, v in delivery["headers"].items()}
            expected = hmac.new(
                SECRET.encode(),
                headers["x-reconciler-timestamp"].encode() + b"." + delivery["body"],
                hashlib.sha256,
            ).hexdigest()
            assert headers["x-reconciler-signature"] == f"sha256={expected}"
            payload = json.loads(delivery["body"])
            assert payload["event"] == "discrepancy.opened"
            assert payload["discrepancy"]["kind"] == "chain_break"
            assert payload["discrepancy"]["first_ledger"] == 80
            assert headers["x-reconciler-delivery"] == str(payload["discrepancy"]["id"])
            assert state.refused == 2
            # Marked delivered only after the receiver answered, so wait for the outbox to say so.
            await wait_for(lambda: service.store.discrepancies.undelivered() == [], what="the mark")


async def test_unreachable_webhook_never_blocks_ingestion(database_url: str) -> None:
    """With the webhook receiver down, ingestion still runs to the tip."""
    net = SimNetwork(
        SimNetConfig(seed=62, first_ledger=50, prebuilt_ledgers=200, events_per_ledger=5)
    )
    with serve_in_thread(net) as url:
        settings = settings_for(
            database_url, url, webhook_urls="http://127.0.0.1:9/down", webhook_secret=SECRET
        )
        async with running_service(settings) as (service, _):
            from stellar_reconciler.store.discrepancies import NewDiscrepancy

            service.store.discrepancies.open(NewDiscrepancy("unexpected", "k", "test"))
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            assert len(service.store.discrepancies.undelivered()) == 1
