"""The explanation as a page: the real service over HTTP against the simulated network, on
SQLite and PostgreSQL, answers a browser's Accept with HTML (the same evidence as the JSON,
every value escaped) and any other client with the JSON it always gave."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from tests.integration.harness import settings_for, wait_for
from tests.integration.test_expectations import ADMIN, AUTH, service_with_expectations
from tests.integration.test_explain import lone_pairs, record
from tests.unit.test_explain_page import BROWSER, HOSTILE, Parsed

PAGE = {"accept": BROWSER}
EVIL_ID = "evil/<script>alert(1)</script>&\"'"


def explain_url(base: str, external_id: str) -> str:
    path = "/".join(quote(segment, safe="") for segment in external_id.split("/"))
    return f"{base}/api/expectations/{path}/explain"


async def test_a_browser_gets_the_explanation_as_a_page_and_clients_the_json(
    database_url: str,
) -> None:
    """Accept as a browser sends it: a page (the dashboard's security headers, Vary: Accept)
    with the verdict, the taken event, the chosen ledger's stored hash and a chain that
    holds; without Accept or with JSON: the JSON as before. A record whose id and asset
    topic hold markup shows them as text, and its discrepancy's page too; the stylesheet
    the page links is served."""
    net = SimNetwork(
        SimNetConfig(seed=31, first_ledger=1000, prebuilt_ledgers=60, events_per_ledger=20)
    )
    paid = lone_pairs(net)[0]
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN, verify_every_ledgers=0)
        async with (
            service_with_expectations(settings) as (service, base, _),
            httpx.AsyncClient(timeout=10) as http,
        ):
            await wait_for(
                lambda: service.status.last_processed_ledger == net.latest_ledger, 30, "catch-up"
            )
            records = [
                record(net, "invoice/2026/paid", paid),
                record(net, EVIL_ID, paid, topics={"3": HOSTILE}),
            ]
            posted = await http.post(f"{base}/api/expectations", json=records, headers=AUTH)
            assert posted.status_code == 201, posted.text
            url_paid = explain_url(base, "invoice/2026/paid")
            page = await http.get(url_paid, headers=PAGE)
            as_json = await http.get(url_paid)
            asked_json = await http.get(url_paid, headers={"accept": "application/json"})
            evil_page = await http.get(explain_url(base, EVIL_ID), headers=PAGE)
            found = (await http.get(f"{base}/api/discrepancies?kind=missing_expected")).json()
            (missing,) = found["discrepancies"]
            discrepancy_page = await http.get(
                f"{base}/api/discrepancies/{missing['id']}/explain", headers=PAGE
            )
            stylesheet = await http.get(f"{base}/static/explain.css")

    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["vary"] == "Accept"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    explained = as_json.json()
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.headers["vary"] == "Accept"
    assert asked_json.json() == explained
    html = page.text
    assert "Why record invoice/2026/paid is matched" in html
    assert f'data-verdict="taken" data-event="{paid["id"]}"' in html
    assert explained["chosen"]["ledger"]["hash"] in html
    assert 'data-chain="holds"' in html
    # From /api/expectations/invoice/2026/paid/explain, five folders up is the root.
    assert 'href="../../../../../static/explain.css"' in html

    assert evil_page.status_code == 200
    parsed = Parsed(evil_page.text)
    assert "script" not in parsed.tags and "img" not in parsed.tags
    assert not any(name.startswith("on") for name, _ in parsed.attributes)
    text = "".join(parsed.text)
    assert f"Why record {EVIL_ID} is missing_expected" in text
    assert HOSTILE in text

    assert discrepancy_page.status_code == 200
    shown = Parsed(discrepancy_page.text)
    assert "script" not in shown.tags and "img" not in shown.tags
    assert f"Discrepancy #{missing['id']}: missing_expected" in "".join(shown.text)
    assert stylesheet.status_code == 200
    assert stylesheet.headers["content-type"].startswith("text/css")
