"""The dashboard's explain links in a real browser (Debian's Chromium) when READ_TOKEN is set:
a followed link sends no Authorization header, so the page buys a ticket with its token and
the link opens with the ticket in its URL, never the token."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from stellar_reconciler.api.explain import PAGE_TICKET_SECONDS
from stellar_reconciler.api.tickets import Tickets
from stellar_reconciler.simnet import serve_in_thread
from tests.e2e.harness import SOON, Deployment, Watched
from tests.e2e.test_dashboard import READER, seed_expectations, use_token
from tests.unit.test_tickets import Clock

pytestmark = pytest.mark.browser


def test_with_read_token_explain_links_open_their_pages_through_a_ticket(
    tmp_path: Path, watched: Watched
) -> None:
    """With READ_TOKEN set and the read token entered, a settled record's and a discrepancy's
    explain links open their pages with a ticket in the URL; a link on such a page opens too;
    once the ticket's lifetime has passed the same link is refused (401, saying to open it
    again from the dashboard), and so is a made-up ticket. No URL carries the token."""
    deployment = Deployment(f"sqlite:///{tmp_path / 'reconciler.db'}", read_token=READER)
    with serve_in_thread(deployment.net) as rpc_url:
        deployment.start(rpc_url)
        try:
            assert deployment.service is not None
            clock = Clock(time.monotonic())
            deployment.service.app.state.page_tickets = Tickets(PAGE_TICKET_SECONDS, clock)
            seed_expectations(deployment)
            page = watched.open(deployment.base + "/", live=False)
            expect(page.locator("#connection")).to_contain_text("READ_TOKEN is set", timeout=SOON)
            use_token(page, READER)
            expect(page.locator("#connection")).to_have_text("live", timeout=SOON)

            settled = page.locator("#expectations-settled li", has_text="invoice-1001")
            expect(settled).to_contain_text("matched", timeout=SOON)
            settled.get_by_role("link", name="Evidence for record invoice-1001").click()
            expect(page).to_have_url(re.compile(r"/api/expectations/invoice-1001/explain\?ticket="))
            expect(page.get_by_role("heading", level=1)).to_have_text(
                "Why record invoice-1001 is matched"
            )

            page.go_back()
            expect(page.locator("#connection")).to_have_text("live", timeout=SOON)
            missing = page.locator("#discrepancies-newest li", has_text="missing_expected").first
            expect(missing).to_be_visible(timeout=SOON)
            missing.get_by_role("link", name=re.compile("Evidence for discrepancy")).click()
            expect(page).to_have_url(re.compile(r"/api/discrepancies/[0-9]+/explain\?ticket="))
            expect(page.get_by_role("heading", level=1)).to_contain_text(": missing_expected")
            opened_at = page.url

            # The record's own findings link back to this discrepancy: a link on the page.
            own = page.locator("#record-discrepancies a").first
            expect(own).to_have_attribute("href", re.compile(r"\?ticket="))
            with page.expect_response(re.compile(r"/explain\?ticket=")) as followed:
                own.click()
            assert followed.value.status == 200
            expect(page.get_by_role("heading", level=1)).to_contain_text(": missing_expected")

            clock.now += PAGE_TICKET_SECONDS
            with page.expect_response(re.compile(r"/explain\?ticket=")) as late:
                page.locator("#record-discrepancies a").first.click()
            assert late.value.status == 401
            expect(page.locator("body")).to_contain_text("unknown or expired", timeout=SOON)
            expect(page.locator("body")).to_contain_text("again from the dashboard")

            made_up = opened_at.split("?ticket=")[0] + "?ticket=made-up"
            refused = page.goto(made_up)
            assert refused is not None and refused.status == 401
            expect(page.locator("body")).to_contain_text("unknown or expired")

            assert [url for url in watched.requested if READER in url] == []
            watched.page.context.close()
        finally:
            deployment.stop()
    # The refused stream before the token was entered, and the pages refused on purpose.
    watched.assert_clean(expected_refusals=None)
