"""The demo's moments in a real browser: the simulated network's scheduled lies found,
repaired and shown one by one, and a catch-up shown with its rate and ETA.

UPDATE_SCREENSHOT=1 copies the screenshot of the repaired lies to docs/demo-repaired.png.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from stellar_reconciler.demo import DEMO_VERIFY_EVERY_LEDGERS
from stellar_reconciler.simnet import FaultKind, LieSchedule, serve_in_thread
from stellar_reconciler.simnet.cursor import Cursor
from tests.e2e.harness import SOON, Deployment, Watched

pytestmark = pytest.mark.browser

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "demo-repaired.png"


def test_each_demo_lie_is_shown_found_and_repaired(tmp_path: Path, browser: Browser) -> None:
    """Two lies told seconds apart become two source_mismatch records, each repaired
    automatically and listed under Recently resolved with when and how; none stays open."""
    deployment = Deployment(
        f"sqlite:///{tmp_path / 'reconciler.db'}", verify_every_ledgers=DEMO_VERIFY_EVERY_LEDGERS
    )
    with serve_in_thread(deployment.net) as rpc_url:
        deployment.start(rpc_url)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1100})
            watched = Watched(context.new_page())
            page = watched.open(deployment.base + "/")
            resolved = page.locator("#discrepancies-resolved li[data-kind]")
            expect(resolved).to_have_count(0)
            net = deployment.net
            net.schedule_lies(
                LieSchedule(start=net.latest_ledger, first_after=3, second_after=15, every=10_000)
            )
            expect(resolved).to_have_count(1, timeout=SOON)
            dropped = resolved.first
            expect(dropped).to_contain_text("source_mismatch")
            expect(dropped).to_contain_text("1 events missing, 0 not on chain, 0 changed")
            expect(dropped).to_contain_text("automatically")
            expect(dropped.locator(".resolution")).to_contain_text("a second read matched")
            expect(resolved).to_have_count(2, timeout=SOON)
            expect(resolved.first).to_contain_text("0 events missing, 0 not on chain, 1 changed")
            expect(page.locator("#discrepancies-total")).to_have_text("0")
            expect(page.locator(".chart canvas")).to_have_count(3)
            shot = tmp_path / "demo-repaired.png"
            page.screenshot(path=str(shot))
            watched.assert_clean()
            context.close()
            records = deployment.api("GET", "/api/discrepancies?open=false")["discrepancies"]
            lied_on = sorted(Cursor.parse(event_id).ledger for _, event_id in net.lies_told)
            assert [(r["kind"], r["resolved_by"]) for r in records] == [
                ("source_mismatch", "auto"),
                ("source_mismatch", "auto"),
            ]
            spans = sorted((r["first_ledger"], r["last_ledger"]) for r in records)
            assert all(
                first <= ledger <= last
                for (first, last), ledger in zip(spans, lied_on, strict=True)
            )
        finally:
            deployment.stop()
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, SCREENSHOT)


def test_catch_up_shows_progress_with_rate_and_eta(tmp_path: Path, browser: Browser) -> None:
    """A backlog shows a progress bar with ledgers/s, events/s and time left, and the bar
    goes away once the service has caught up."""
    deployment = Deployment(
        f"sqlite:///{tmp_path / 'reconciler.db'}", batch_max_ledgers=10, catch_up_process_ledgers=0
    )
    with serve_in_thread(deployment.net) as rpc_url:
        deployment.start(rpc_url)
        try:
            deployment.api("POST", "/api/worker/pause")
            deployment.stop_ledgers()
            deployment.net.close_ledgers(600)
            # Slow answers make the catch-up last long enough to be watched.
            deployment.net.faults.add(FaultKind.SLOW, method="getEvents", times=None, delay=0.05)
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            watched = Watched(context.new_page())
            page = watched.open(deployment.base + "/")
            catch_up = page.locator("#catch-up")
            expect(catch_up).to_be_hidden()
            deployment.api("POST", "/api/worker/resume")
            expect(catch_up).to_be_visible(timeout=SOON)
            text = page.locator("#catch-up-text")
            expect(text).to_contain_text(" of ")
            expect(text).to_contain_text("ledgers/s", timeout=SOON)
            expect(text).to_contain_text("events/s")
            expect(text).to_contain_text("left")
            assert 0 < float(page.locator("#catch-up-bar").get_attribute("value") or 0) < 1
            expect(catch_up).to_be_hidden(timeout=60_000)
            expect(page.locator("#health-badge")).to_have_text("synced")
            watched.assert_clean()
            context.close()
        finally:
            deployment.stop()
