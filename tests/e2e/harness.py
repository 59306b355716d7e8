"""The real service following the simulated network, run for a synchronous browser test, and
a page watched for console errors and for requests that leave the machine."""

from __future__ import annotations

import asyncio
import threading
from typing import Any
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import Page, Route, expect

from stellar_reconciler.service import Service
from stellar_reconciler.simnet import SimNetConfig, SimNetwork
from tests.integration.harness import settings_for, wait_for, wait_for_sync

ADMIN = "admin-token-0123456789"
# Generous: these prove that things happen, not how fast (the benchmark measures that).
SOON = 15_000


class Deployment:
    """The service following a simulated network whose ledgers close every `interval` seconds
    until stop_ledgers(); the service runs on its own event loop in a thread, so the tests can
    drive the browser synchronously."""

    def __init__(self, database_url: str, interval: float = 0.5, **settings: Any) -> None:
        self.net = SimNetwork(
            SimNetConfig(seed=77, first_ledger=5000, prebuilt_ledgers=40, events_per_ledger=5)
        )
        self.database_url = database_url
        self.settings = settings
        self.interval = interval
        self.base = ""
        self.service: Service | None = None
        self._closing_ledgers = threading.Event()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    def start(self, rpc_url: str) -> None:
        self._rpc_url = rpc_url
        threading.Thread(target=self._run_service, name="service", daemon=True).start()
        threading.Thread(target=self._close_ledgers, name="ledger-clock", daemon=True).start()
        if not self._ready.wait(30) or self._failure is not None:
            raise RuntimeError(f"the service did not start: {self._failure!r}")
        wait_for_sync(lambda: self.processed() == self.net.latest_ledger, what="catch-up")

    def stop(self) -> None:
        self._closing_ledgers.set()
        self._stopping.set()

    def stop_ledgers(self) -> None:
        self._closing_ledgers.set()

    def processed(self) -> int | None:
        return self.service.status.last_processed_ledger if self.service else None

    def _close_ledgers(self) -> None:
        while not self._closing_ledgers.wait(self.interval):
            self.net.close_ledger()

    def _run_service(self) -> None:
        try:
            asyncio.run(self._serve())
        # Whatever ends the thread is handed to the test's thread, which fails with it.
        except BaseException as exc:  # noqa: BLE001
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        settings = settings_for(
            self.database_url, self._rpc_url, admin_token=ADMIN, **self.settings
        )
        service = Service.build(settings)
        # Samples four times as often as in production, so charts fill within a test.
        service.telemetry.interval = 0.5
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        port = await wait_for(service.bound_port, 10, "the HTTP server to listen")
        self.service, self.base = service, f"http://127.0.0.1:{port}"
        self._ready.set()
        await asyncio.to_thread(self._stopping.wait)
        stop.set()
        await asyncio.wait_for(task, 30)

    def api(self, method: str, path: str, body: Any = None, token: str | None = ADMIN) -> Any:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = httpx.request(method, self.base + path, json=body, headers=headers, timeout=10)
        assert response.status_code < 300, response.text
        return response.json()


class Watched:
    """A page and everything it must not do: log errors, throw, or reach past loopback."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.requested: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.route("**/*", self._only_loopback)

    def _only_loopback(self, route: Route) -> None:
        self.requested.append(route.request.url)
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
            return
        self.outside.append(route.request.url)
        route.abort()

    def open(self, url: str, live: bool = True) -> Page:
        self.page.goto(url)
        if not live:
            return self.page
        expect(self.page.locator("#connection")).to_have_text("live", timeout=SOON)
        expect(self.page.locator("#processed-ledger")).not_to_have_text("—", timeout=SOON)
        return self.page

    def assert_clean(self, expected_refusals: int | None = 0) -> None:
        """No console errors but the browser's notes of 401 answers: exactly so many, or any
        number with None (a refused stream is retried)."""
        refusals = [e for e in self.errors if "status of 401" in e]
        if expected_refusals is not None:
            assert len(refusals) == expected_refusals, self.errors
        assert [e for e in self.errors if e not in refusals] == []
        assert self.outside == []
