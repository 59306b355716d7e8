"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, against the real
service following the simulated network.

Without /usr/bin/chromium these tests skip, saying how to install it; with REQUIRE_BROWSER=1
(as CI sets) they fail instead. UPDATE_SCREENSHOT=1 copies the screenshot the screenshot test
takes to docs/dashboard.png; otherwise it stays under the test's temporary directory, so a
test run never changes the git tree.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from stellar_reconciler.simnet import FaultKind, serve_in_thread
from tests.e2e.harness import ADMIN, SOON, Deployment, Watched
from tests.integration.harness import wait_for_sync

pytestmark = pytest.mark.browser

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
READER = "read-token-0123456789"
# An account no simulated event involves.
STRANGER = "GAFCZPBOMB2PKPM6PKCXMITLXUL22A2T4PBYMKQS3VPYFI32B5RTHEKL"


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    deployed = Deployment(f"sqlite:///{tmp_path / 'reconciler.db'}")
    with serve_in_thread(deployed.net) as rpc_url:
        deployed.start(rpc_url)
        yield deployed
        deployed.stop()


def use_token(page: Page, token: str) -> None:
    page.get_by_label("Admin token", exact=True).fill(token)
    page.get_by_role("button", name="Use for this tab").click()
    expect(page.locator("#token-set")).to_be_visible()


def confirm(page: Page, says: str) -> None:
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(says)
    dialog.locator("#confirm-ok").click()
    expect(dialog).to_be_hidden()


def test_page_follows_the_network_live(deployment: Deployment, watched: Watched) -> None:
    """The page loads cleanly, offline, and its ledger number and events move as ledgers close."""
    page = watched.open(deployment.base + "/")
    processed = page.locator("#processed-ledger")
    newest_ledger = page.locator("#events-body tr").first.locator("td").first
    expect(newest_ledger).not_to_have_text("No events yet")
    before, newest_before = processed.inner_text(), newest_ledger.inner_text()
    expect(processed).not_to_have_text(before, timeout=SOON)
    expect(newest_ledger).not_to_have_text(newest_before, timeout=SOON)
    shown = int(processed.inner_text().replace(",", ""))
    assert shown <= (deployment.processed() or 0)
    expect(page.locator("#health-badge")).to_have_text("synced")
    expect(page.locator("#role")).to_have_text("leader: this replica indexes and writes")
    watched.assert_clean()


def test_rescan_with_the_token_runs_to_completion(deployment: Deployment, watched: Watched) -> None:
    """With the token a confirmed rescan of N ledgers runs to 100% and is audited."""
    page = watched.open(deployment.base + "/")
    use_token(page, ADMIN)
    last = deployment.processed() or 0
    page.get_by_label("From ledger", exact=True).fill(str(last - 11))
    page.get_by_label("To ledger", exact=True).fill(str(last - 2))
    page.get_by_role("button", name="Rescan…").click()
    confirm(page, "10 ledgers will be reprocessed")
    expect(page.locator("#notice")).to_contain_text("Rescan job #1 queued: 10 ledgers")
    expect(page.locator("#job-1 .pct")).to_have_text("100%", timeout=SOON)
    expect(page.locator("#job-1")).to_have_attribute("data-state", "done")
    audit = deployment.api("GET", "/api/audit")["entries"]
    assert [e["action"] for e in audit] == ["rescan"]
    # Without READ_TOKEN the stream needs no token, so none is put in a URL.
    assert [url for url in watched.requested if ADMIN in url] == []
    watched.assert_clean()


def test_a_backfill_job_shows_its_percent_rate_and_time_left(
    tmp_path: Path, watched: Watched
) -> None:
    """Indexed from 5020, a backfill of 5000-5019 posted to /api/backfills in chunks of 2
    ledgers, the RPC slow to answer for those ledgers: while it runs, the job's line shows its
    rate and the time left; once done, 100% and the average rate /api/jobs gives."""
    deployment = Deployment(
        f"sqlite:///{tmp_path / 'reconciler.db'}", start_ledger="5020", backfill_chunk_ledgers=2
    )
    with serve_in_thread(deployment.net) as rpc_url:
        deployment.start(rpc_url)
        try:
            deployment.net.faults.add(
                FaultKind.SLOW,
                method="getLedgers",
                times=None,
                delay=0.4,
                when=lambda params: int(params.get("startLedger") or 5020) < 5020,
            )
            page = watched.open(deployment.base + "/")
            body = {"from_ledger": 5000, "to_ledger": 5019}
            job = deployment.api("POST", "/api/backfills", body)["id"]
            line = page.locator(f"#job-{job} .job-progress")
            running = re.compile(
                r"^running · \d+ of 20 ledgers · [\d,.]+ ledgers/s · about \d+s left$"
            )
            expect(line).to_have_text(running, timeout=SOON)
            expect(page.locator(f"#job-{job}")).to_have_attribute(
                "data-state", "done", timeout=SOON
            )
            rate = deployment.api("GET", f"/api/jobs/{job}")["rate_ledgers_per_sec"]
            expect(line).to_have_text(f"done · 20 of 20 ledgers · {rate:,.1f} ledgers/s")
            expect(page.locator(f"#job-{job} .pct")).to_have_text("100%")
            expect(page.locator(f"#job-{job}")).to_contain_text("backfill")
        finally:
            deployment.stop()
    watched.assert_clean()


def test_actions_without_the_right_token_are_refused(
    deployment: Deployment, watched: Watched
) -> None:
    """Without the right token actions show the API's refusal and change nothing."""
    page = watched.open(deployment.base + "/")
    page.get_by_role("button", name="Pause").click()
    confirm(page, "Pause the worker")
    notice = page.locator("#notice")
    expect(notice).to_have_attribute("role", "alert")
    expect(notice).to_contain_text("Refused (HTTP 401)")
    expect(notice).to_contain_text("Enter the admin token")
    use_token(page, "not-the-admin-token")
    page.get_by_role("button", name="Restart worker").click()
    confirm(page, "this page stays connected")
    expect(notice).to_contain_text("was not accepted")
    page.get_by_label("From ledger", exact=True).fill("20")
    page.get_by_label("To ledger", exact=True).fill("10")
    page.get_by_role("button", name="Rescan…").click()
    expect(page.locator("#rescan-error")).to_have_text("From ledger must not be after to ledger")
    expect(page.locator("#confirm")).to_be_hidden()
    assert deployment.api("GET", "/api/audit")["entries"] == []
    assert deployment.api("GET", "/api/status")["paused"] is False
    watched.assert_clean(expected_refusals=2)


def test_restart_keeps_the_page_connected(deployment: Deployment, watched: Watched) -> None:
    """Restarting the worker from the page leaves the page live, and it keeps following."""
    page = watched.open(deployment.base + "/")
    use_token(page, ADMIN)
    page.get_by_role("button", name="Restart worker").click()
    confirm(page, "The HTTP server keeps running")
    expect(page.locator("#notice")).to_contain_text("Worker restart requested")
    wait_for_sync(
        lambda: deployment.api("GET", "/api/audit")["entries"], what="the restart in the audit"
    )
    processed = page.locator("#processed-ledger")
    after_restart = processed.inner_text()
    expect(processed).not_to_have_text(after_restart, timeout=SOON)
    expect(page.locator("#connection")).to_have_text("live")
    watched.assert_clean()


def test_page_reconnects_by_itself_after_the_stream_drops(
    deployment: Deployment, watched: Watched
) -> None:
    """A dropped stream shows "reconnecting…", then the page is live and following again."""
    page = watched.open(deployment.base + "/")
    assert deployment.service is not None
    source = deployment.service.server.config.app.state.snapshots
    source.closing = True
    connection = page.locator("#connection")
    expect(connection).to_have_text("reconnecting…", timeout=SOON)
    source.closing = False
    expect(connection).to_have_text("live", timeout=SOON)
    processed = page.locator("#processed-ledger")
    before = processed.inner_text()
    expect(processed).not_to_have_text(before, timeout=SOON)
    watched.assert_clean()


def test_with_read_token_the_page_says_why_and_connects_once_given_one(
    tmp_path: Path, watched: Watched
) -> None:
    """With READ_TOKEN set the page says why it cannot stream and goes live once given one."""
    deployment = Deployment(f"sqlite:///{tmp_path / 'reconciler.db'}", read_token=READER)
    with serve_in_thread(deployment.net) as rpc_url:
        deployment.start(rpc_url)
        try:
            page = watched.open(deployment.base + "/", live=False)
            connection = page.locator("#connection")
            expect(connection).to_contain_text("READ_TOKEN is set", timeout=SOON)
            expect(page.locator("#processed-ledger")).to_have_text("—")
            use_token(page, READER)
            expect(connection).to_have_text("live", timeout=SOON)
            expect(page.locator("#processed-ledger")).not_to_have_text("—")
            assert any("api/stream?ticket=" in url for url in watched.requested)
            assert [url for url in watched.requested if READER in url] == []
            watched.page.context.close()
        finally:
            deployment.stop()
    watched.assert_clean(expected_refusals=None)


def test_with_read_token_no_request_url_carries_the_admin_token(
    tmp_path: Path, watched: Watched
) -> None:
    """With READ_TOKEN and ADMIN_TOKEN set and the admin token entered, the page streams
    through a ticket: no URL it requests contains either token, and it stays live."""
    deployment = Deployment(f"sqlite:///{tmp_path / 'reconciler.db'}", read_token=READER)
    with serve_in_thread(deployment.net) as rpc_url:
        deployment.start(rpc_url)
        try:
            page = watched.open(deployment.base + "/", live=False)
            expect(page.locator("#connection")).to_contain_text("READ_TOKEN is set", timeout=SOON)
            use_token(page, ADMIN)
            expect(page.locator("#connection")).to_have_text("live", timeout=SOON)
            processed = page.locator("#processed-ledger")
            before = processed.inner_text()
            expect(processed).not_to_have_text(before, timeout=SOON)
            # Reload: the token is kept for the tab, and the new page gets a ticket of its own.
            page.reload()
            expect(page.locator("#connection")).to_have_text("live", timeout=SOON)
            tickets = {url for url in watched.requested if "api/stream?ticket=" in url}
            assert len(tickets) >= 2
            assert [url for url in watched.requested if ADMIN in url or READER in url] == []
            watched.page.context.close()
        finally:
            deployment.stop()
    watched.assert_clean(expected_refusals=None)


def settled_dom(page: Page) -> str:
    """The whole document once the stream and the telemetry history are in, with the
    explicitly live fields (uptime, rates, CPU, memory, RPC call counts: they move with the
    clock, and a paused worker still polls the network's health) blanked."""
    expect(page.locator(".chart canvas")).to_have_count(3, timeout=SOON)
    expect(page.locator("#rpc-requests")).not_to_have_text("—", timeout=SOON)
    return str(
        page.evaluate(
            """() => {
                const copy = document.documentElement.cloneNode(true);
                copy.querySelectorAll("[data-live]").forEach((n) => { n.textContent = ""; });
                return copy.outerHTML;
            }"""
        )
    )


def test_same_state_renders_the_same_dom(deployment: Deployment, browser: Browser) -> None:
    """Two loads of the same state give the same DOM, outside the fields marked live."""
    deployment.api("POST", "/api/worker/pause")
    deployment.stop_ledgers()
    status = deployment.api("GET", "/api/status")
    assert status["paused"] is True
    documents = []
    for _ in range(2):
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = Watched(context.new_page()).open(deployment.base + "/")
        expect(page.locator("#processed-ledger")).to_have_text(
            f"{status['last_processed_ledger']:,}"
        )
        documents.append(settled_dom(page))
        context.close()
    assert documents[0] == documents[1]
    assert 'data-status="degraded"' in documents[0]


def test_api_documentation_renders_offline(deployment: Deployment, watched: Watched) -> None:
    """/docs renders Swagger UI from the package's own files, listing the stream endpoint."""
    page = watched.page
    page.goto(deployment.base + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("stellar-reconciler")
    expect(page.get_by_text("/api/stream", exact=True)).to_be_visible()
    watched.assert_clean()


def test_phone_width_has_no_sideways_scrolling(deployment: Deployment, browser: Browser) -> None:
    """At phone width the page is one column: nothing but the events table scrolls sideways."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    watched = Watched(context.new_page())
    page = watched.open(deployment.base + "/")
    expect(page.locator(".chart canvas")).to_have_count(3, timeout=SOON)
    overflow = page.evaluate("() => document.documentElement.scrollWidth")
    assert overflow <= 390
    watched.assert_clean()
    context.close()


FORMAT_CHECKS = """async () => {
    const f = await import("/static/js/format.js");
    const transfer = {name: "transfer", topics: ["transfer", "GA" + "A".repeat(54),
        "GB" + "B".repeat(54), "USDC:G"], value: "170141183460469231731687303715884105727"};
    return {
        grouped: f.groupDigits("1234567"),
        negative: f.formatAmount("-1234567.0500"),
        huge: f.formatAmount(transfer.value),
        counter: f.formatCount(1234567.0),
        utc: f.formatUtc("2026-11-29T20:15:03.900Z"),
        epoch: f.formatUtcSeconds(1795983303.7),
        duration: f.formatDuration(93784),
        fields: f.eventKeyFields(transfer).map(([label, , kind]) => `${label}:${kind}`),
        plan: f.planRescan("10", "19", {last_processed_ledger: 30, oldest_ledger: 5}),
        late: f.planRescan("10", "31", {last_processed_ledger: 30, oldest_ledger: 5}).error,
        old: f.planRescan("4", "9", {last_processed_ledger: 30, oldest_ledger: 5}).error,
    };
}"""


def test_numbers_are_grouped_exact_and_times_utc(deployment: Deployment, browser: Browser) -> None:
    """Outside UTC the page still shows UTC, groups digits, keeps i128 amounts exact."""
    context = browser.new_context(timezone_id="Pacific/Auckland", locale="de-DE")
    page = context.new_page()
    page.goto(deployment.base + "/")
    checks = page.evaluate(FORMAT_CHECKS)
    context.close()
    assert checks["grouped"] == "1,234,567"
    assert checks["negative"] == "-1,234,567.0500"
    assert checks["huge"] == "170,141,183,460,469,231,731,687,303,715,884,105,727"
    assert checks["counter"] == "1,234,567"
    assert checks["utc"] == "2026-11-29 20:15:03 UTC"
    assert checks["epoch"] == "2026-11-29 20:15:03 UTC"
    assert checks["duration"] == "1d 2h 3m"
    assert checks["fields"] == ["from:address", "to:address", "amount:amount"]
    assert checks["plan"] == {"ok": True, "first": 10, "last": 19, "count": 10}
    assert "last processed ledger (30)" in checks["late"]
    assert "at least 5" in checks["old"]


def seed_expectations(deployment: Deployment) -> None:
    """Expected records that end matched, off by one unit, never seen and still pending."""
    token = deployment.net.token_contract_id
    first, second = deployment.api("GET", "/api/events?topic=transfer&limit=2")["events"]

    def record(external_id: str, event: dict[str, Any], amount: int) -> dict[str, Any]:
        return {
            "external_id": external_id,
            "contract_id": token,
            "event_name": "transfer",
            "tx_hash": event["tx_hash"],
            "from": event["topics"][1],
            "to": event["topics"][2],
            "amount": str(amount),
            "deadline_ledgers": 50,
        }

    nobody = {"contract_id": token, "event_name": "transfer", "from": STRANGER, "to": STRANGER}
    deployment.api(
        "POST",
        "/api/expectations",
        [
            record("invoice-1001", first, int(first["value"])),
            record("invoice-1002", second, int(second["value"]) + 1),
            {"external_id": "invoice-1003", **nobody, "amount": "250", "deadline_ledgers": 3},
            {"external_id": "invoice-1004", **nobody, "amount": "990", "deadline_ledgers": 100_000},
        ],
    )


def test_screenshot_shows_what_the_api_says(tmp_path: Path, browser: Browser) -> None:
    """Discrepancy and expectation counts on the page equal the API's (README screenshot)."""
    deployment = Deployment(f"sqlite:///{tmp_path / 'reconciler.db'}", interval=1.0)
    deployment.settings["unexpected_event_contracts"] = (deployment.net.escrow_contract_id,)
    with serve_in_thread(deployment.net) as rpc_url:
        deployment.start(rpc_url)
        try:
            seed_expectations(deployment)
            last = deployment.processed() or 0
            deployment.api("POST", "/api/rescans", {"from_ledger": last - 19, "to_ledger": last})
            wait_for_sync(
                lambda: len(deployment.api("GET", "/api/telemetry")["samples"]) >= 40,
                what="20 seconds of telemetry",
            )
            deployment.stop_ledgers()
            summary = deployment.api("GET", "/api/reconciliation")
            counts = deployment.api("GET", "/api/discrepancies?open=true")["open_counts"]
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            watched = Watched(context.new_page())
            page = watched.open(deployment.base + "/")
            use_token(page, ADMIN)
            expect(page.locator("#job-1 .pct")).to_have_text("100%")
            expect(page.locator("#discrepancies-total")).to_have_text(f"{sum(counts.values()):,}")
            matched = page.locator("#expectations-counts li").nth(1)
            expect(matched).to_have_text(f"matched{summary['expectations']['matched']:,}")
            expect(page.locator(".chart canvas")).to_have_count(3)
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot))
            watched.assert_clean()
            context.close()
        finally:
            deployment.stop()
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, SCREENSHOT)


def test_settled_records_and_discrepancies_link_to_their_explanation(
    deployment: Deployment, watched: Watched
) -> None:
    """The oldest open record is shown (invoice-1002, off by one unit, waits for its
    deadline); a settled record's explain link opens its evidence as a page: the verdict,
    the taken event first, the chosen ledger's hash (the API's) with a chain that holds, in
    the page's own stylesheet, and a link back to the dashboard; an open discrepancy's link
    opens its page with its record's verdict. No script error and no refused resource."""
    seed_expectations(deployment)
    page = watched.open(deployment.base + "/")
    expect(page.locator("#expectations-oldest")).to_contain_text("invoice-1002")
    settled = page.locator("#expectations-settled li", has_text="invoice-1001")
    expect(settled).to_contain_text("matched")
    settled.get_by_role("link", name="Evidence for record invoice-1001").click()
    expect(page).to_have_url(deployment.base + "/api/expectations/invoice-1001/explain")
    explained = deployment.api("GET", "/api/expectations/invoice-1001/explain")
    expect(page.get_by_role("heading", level=1)).to_have_text("Why record invoice-1001 is matched")
    expect(page.locator("#verdict .status")).to_have_text("matched")
    expect(page.locator("#verdict .summary")).to_have_text(explained["verdict"]["summary"])
    taken = page.locator("#candidates tr.candidate").first
    expect(taken).to_have_attribute("data-verdict", "taken")
    expect(taken.locator(".event-id")).to_have_text(explained["candidates"][0]["event"]["id"])
    chosen = explained["chosen"]["ledger"]
    expect(page.locator("#chosen [data-field=hash] td")).to_have_text(chosen["hash"])
    expect(page.locator("#chosen [data-field=sequence] td")).to_have_text(str(chosen["sequence"]))
    expect(page.locator("#chosen [data-chain]")).to_have_text("chain holds")
    # The stylesheet loaded under the Content-Security-Policy: the header has its colour.
    expect(page.locator("header.top")).to_have_css("background-color", "rgb(31, 58, 95)")
    page.get_by_role("link", name="← dashboard").click()
    expect(page).to_have_url(deployment.base + "/")
    missing = page.locator("#discrepancies-newest li", has_text="missing_expected").first
    expect(missing).to_be_visible(timeout=SOON)
    missing.get_by_role("link", name=re.compile("Evidence for discrepancy")).click()
    expect(page).to_have_url(re.compile(r"/api/discrepancies/[0-9]+/explain$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(": missing_expected")
    expect(page.locator("#discrepancy [data-field=subject] td")).to_have_text("invoice-1003")
    expect(page.locator("#verdict .status")).to_have_text("missing_expected")
    expect(page.locator("#chosen")).to_contain_text("None: the record holds no event.")
    watched.assert_clean()
