"""Explanation pages behind READ_TOKEN: the service's real app on SQLite and PostgreSQL opens
a page with a short-lived ticket bought with the token (a followed link sends no header),
and refuses everything else a ticket might be tried for."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from stellar_reconciler.api.explain import PAGE_TICKET_SECONDS
from stellar_reconciler.api.tickets import Tickets
from stellar_reconciler.service import Service
from tests.integration.harness import settings_for
from tests.integration.test_expectations import ADMIN, AUTH, record
from tests.unit.test_explain_page import BROWSER
from tests.unit.test_tickets import Clock

READER = "read-token-for-tests-0123456789"
PAGE = {"accept": BROWSER}
EXPLAIN = "/api/expectations/inv/1/explain"


@contextlib.asynccontextmanager
async def explained(
    database_url: str, clock: Clock, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The app (built, not run) with one pending record `inv/1`, its page tickets on `clock`."""
    settings = settings_for(database_url, "http://127.0.0.1:1/", admin_token=ADMIN, **overrides)
    service = Service.build(settings)
    service.app.state.page_tickets = Tickets(PAGE_TICKET_SECONDS, clock)
    transport = httpx.ASGITransport(app=service.server.config.app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            posted = await http.post("/api/expectations", json=record("inv/1"), headers=AUTH)
            assert posted.status_code == 201, posted.text
            yield http
    finally:
        await service.rpc.aclose()
        service.store.close()


async def test_a_ticket_opens_the_page_and_nothing_else(database_url: str) -> None:
    """With READ_TOKEN set: no ticket without the token; the ticket opens the record's page
    (Accept: text/html) but not its JSON (the token in the header does); a made-up ticket,
    a stream ticket and a ticket past its lifetime are refused with a 401 that says what to
    do; a bare link is refused."""
    clock = Clock(1000.0)
    async with explained(database_url, clock, read_token=READER) as http:
        anonymous = await http.post("/api/explain/ticket")
        issued = await http.post(
            "/api/explain/ticket", headers={"authorization": f"Bearer {READER}"}
        )
        ticket = issued.json()["ticket"]
        page = await http.get(EXPLAIN, params={"ticket": ticket}, headers=PAGE)
        as_json = await http.get(EXPLAIN, params={"ticket": ticket})
        with_token = await http.get(
            EXPLAIN, params={"ticket": ticket}, headers={"authorization": f"Bearer {READER}"}
        )
        bare = await http.get(EXPLAIN, headers=PAGE)
        forged = await http.get(EXPLAIN, params={"ticket": ticket[::-1]}, headers=PAGE)
        stream_ticket = (
            await http.post("/api/stream/ticket", headers={"authorization": f"Bearer {READER}"})
        ).json()["ticket"]
        for_the_stream = await http.get(EXPLAIN, params={"ticket": stream_ticket}, headers=PAGE)
        clock.now += PAGE_TICKET_SECONDS - 1
        still = await http.get(EXPLAIN, params={"ticket": ticket}, headers=PAGE)
        clock.now += 1
        expired = await http.get(EXPLAIN, params={"ticket": ticket}, headers=PAGE)
    assert anonymous.status_code == 401
    assert issued.status_code == 200
    assert issued.json()["expires_in_seconds"] == PAGE_TICKET_SECONDS
    assert READER not in ticket and ADMIN not in ticket
    assert page.status_code == 200 and "Why record inv/1 is pending" in page.text
    assert as_json.status_code == 401 and "only the explanation page" in as_json.json()["error"]
    assert with_token.status_code == 200 and with_token.json()["expectation"]["status"] == "pending"
    assert bare.status_code == 401 and "READ_TOKEN" in bare.json()["error"]
    for refused in (forged, for_the_stream, expired):
        assert refused.status_code == 401
        assert "unknown or expired" in refused.json()["error"]
        assert refused.headers["www-authenticate"] == "Bearer"
    assert still.status_code == 200


async def test_without_read_token_a_ticket_is_not_checked(database_url: str) -> None:
    """Without READ_TOKEN reads are open: a made-up ticket changes nothing, page or JSON."""
    async with explained(database_url, Clock(0.0)) as http:
        page = await http.get(EXPLAIN, params={"ticket": "made-up"}, headers=PAGE)
        as_json = await http.get(EXPLAIN, params={"ticket": "made-up"})
    assert page.status_code == 200
    assert as_json.status_code == 200 and as_json.json()["expectation"]["external_id"] == "inv/1"
