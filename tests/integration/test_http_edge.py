"""The HTTP edge of a running service (real uvicorn on loopback): tokens checked before a body
is read, body caps, no 500 for any integer, strict inputs, HEAD, redirects, headers, 405s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from stellar_reconciler.api.edge import DEFAULT_BODY_LIMIT
from stellar_reconciler.api.expectations import MAX_BODY_BYTES
from stellar_reconciler.service import Service
from stellar_reconciler.simnet import SimNetConfig, SimNetwork, serve_in_thread
from tests.integration.harness import running_service, settings_for, wait_for

ADMIN = "admin-token-0123456789"
AUTH = {"authorization": f"Bearer {ADMIN}"}
# Far longer than any answer takes on loopback: a deadline for a test that would otherwise
# wait forever on a server still reading the body, not a timing assertion.
ANSWER_DEADLINE = 20.0


@pytest.fixture
async def served(database_url: str) -> AsyncIterator[tuple[Service, str]]:
    """A synced service with ADMIN_TOKEN set, on loopback."""
    net = SimNetwork(SimNetConfig(seed=71, first_ledger=50, prebuilt_ledgers=30))
    with serve_in_thread(net) as url:
        settings = settings_for(database_url, url, admin_token=ADMIN)
        async with running_service(settings) as (service, base):
            await wait_for(lambda: service.status.last_processed_ledger == net.latest_ledger)
            yield service, base


async def raw_exchange(base: str, head: str, chunks: list[bytes]) -> bytes:
    """Send a request head and some body chunks (never the end of a chunked body) over a raw
    socket, then read the answer: only a server that answers before the body ends replies."""
    address = urlsplit(base)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n")
        for chunk in chunks:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), ANSWER_DEADLINE)
    finally:
        writer.close()


def chunked_head(path: str, headers: str = "") -> str:
    return (
        f"POST {path} HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\n"
        f"Transfer-Encoding: chunked\n{headers}"
    )


async def test_admin_refusal_comes_before_the_body_is_read(served: tuple[Service, str]) -> None:
    """An admin POST without a token, whose chunked body never ends, gets its 401 at once."""
    _, base = served
    answer = await raw_exchange(base, chunked_head("/api/verify"), [b'{"from_ledger": 1' * 100])
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"ADMIN_TOKEN" in answer


async def test_chunked_body_over_the_cap_is_413_while_streaming(
    served: tuple[Service, str],
) -> None:
    """An authorised chunked body that passes 64 KiB is cut off with a 413 before it ends."""
    _, base = served
    chunks = [b" " * 16384] * (DEFAULT_BODY_LIMIT // 16384 + 1)
    head = chunked_head("/api/verify", f"Authorization: Bearer {ADMIN}\n")
    answer = await raw_exchange(base, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"65,536 bytes" in answer


async def test_declared_length_over_the_cap_is_413_without_the_body(
    served: tuple[Service, str],
) -> None:
    """A Content-Length over the cap is refused before a byte of the body is sent."""
    _, base = served
    address = urlsplit(base)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        writer.write(
            b"POST /api/expectations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + ADMIN.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1)
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), ANSWER_DEADLINE)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert f"{MAX_BODY_BYTES:,} bytes".encode() in answer


async def test_expectations_take_bodies_above_the_small_cap(served: tuple[Service, str]) -> None:
    """The bulk endpoint's cap is sized for its 10,000 records: 2,000 records (~650 KB) pass."""
    _, base = served
    records = [
        {
            "external_id": f"inv-{i:06d}",
            "contract_id": "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC",
            "event_name": "transfer",
            "from": "GAFCZPBOMB2PKPM6PKCXMITLXUL22A2T4PBYMKQS3VPYFI32B5RTHEKL",
            "to": "GBNTF3YUJCXYIFQ7G2NU3MXBPC65RUGHBEXIUBIUFAYTTYLUA5QCPHBF",
            "amount": str(1000 + i),
            "deadline_ledgers": 720,
        }
        for i in range(2000)
    ]
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        response = await http.post("/api/expectations", json=records, headers=AUTH)
    assert len(response.request.content) > DEFAULT_BODY_LIMIT
    assert response.status_code == 201, response.text[:500]
    assert response.json()["created"] == 2000


HUGE = [str(2**31), str(2**63), str(2**70)]


async def test_no_integer_makes_a_server_error(served: tuple[Service, str]) -> None:
    """Ids, cursors and ledgers at 2^31, 2^63 and 2^70 answer 404 or 422 with a message."""
    _, base = served
    async with httpx.AsyncClient(base_url=base, headers=AUTH) as http:
        for number in HUGE:
            for response in (
                await http.get(f"/api/discrepancies/{number}"),
                await http.get(f"/api/discrepancies?before_id={number}"),
                await http.post(f"/api/discrepancies/{number}/resolve", json={"note": "n"}),
                await http.get(f"/api/expectations?cursor={number}"),
                await http.get(f"/api/jobs/{number}"),
                # Ledger sequences are uint32: 2^32 and above.
                await http.get(f"/api/events?from_ledger={int(number) * 2}"),
                await http.post("/api/gaps/acknowledge", json={"through_ledger": int(number) * 2}),
            ):
                assert response.status_code in (404, 422), (response.url, response.text)
                assert response.json()["error"], response.url
        # The largest id a column holds is a plain 404, not a database error.
        assert (await http.get(f"/api/discrepancies/{2**31 - 1}")).status_code == 404


async def test_non_ascii_bearer_token_is_401(served: tuple[Service, str]) -> None:
    """A bearer token with non-ASCII bytes is a wrong token (401), not a server error."""
    _, base = served
    async with httpx.AsyncClient(base_url=base) as http:
        token = "Bearer t\u00f6k\u00e9n-\u2603".encode()
        response = await http.post("/api/worker/pause", headers={"authorization": token})
    assert response.status_code == 401, response.text
    assert "ADMIN_TOKEN" in response.json()["error"]


async def test_an_amount_of_48_digits_is_outside_the_i128_range(
    served: tuple[Service, str],
) -> None:
    """A 48-digit amount is called out of range, not 'not a whole number'."""
    _, base = served
    record = {
        "external_id": "too-big",
        "contract_id": "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC",
        "event_name": "transfer",
        "amount": "1" * 48,
        "deadline_ledgers": 10,
    }
    async with httpx.AsyncClient(base_url=base, headers=AUTH) as http:
        response = await http.post("/api/expectations", json=record)
    assert response.status_code == 422, response.text
    assert "outside the i128 range" in response.json()["error"]
    assert response.json()["detail"][0]["type"]


LENIENT_QUERIES = [
    "/api/events?from_ledger=1.0",
    "/api/events?from_ledger=1_000",
    "/api/events?from_ledger=%2B5",
    "/api/events?limit=10%0A",
    "/api/events?cursor=0000000000214748364-0000000001%0A",
    "/api/expectations?cursor=3%0A",
    "/api/discrepancies?before_id=1e3",
]
LENIENT_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("/api/gaps/acknowledge", {"through_oldest": "yes"}),
    ("/api/gaps/acknowledge", {"through_ledger": "99999"}),
    ("/api/gaps/acknowledge", {"through_ledger": 2**32}),
    ("/api/verify", {"from_ledger": True, "to_ledger": 60}),
    ("/api/rescans", {"from_ledger": 55, "to_ledger": 60.0}),
]


async def test_lenient_inputs_are_rejected_with_422(served: tuple[Service, str]) -> None:
    """Numbers that are not plain digits, trailing newlines and non-JSON types are 422s that
    name the field, and every detail entry has loc, msg and type."""
    _, base = served
    async with httpx.AsyncClient(base_url=base, headers=AUTH) as http:
        answers = [await http.get(path) for path in LENIENT_QUERIES]
        answers += [await http.post(path, json=body) for path, body in LENIENT_BODIES]
    for response in answers:
        assert response.status_code == 422, (response.request.url, response.text)
        body = response.json()
        assert body["error"] and body["detail"], response.text
        for entry in body["detail"]:
            assert set(entry) == {"loc", "msg", "type"}, entry


async def test_invalid_json_is_422_with_type(served: tuple[Service, str]) -> None:
    """Malformed JSON and a body that is not UTF-8 both answer 422 json_invalid, as documented."""
    _, base = served
    headers = {**AUTH, "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=base, headers=headers) as http:
        for content in (b'{"from_ledger": ', b'{"note": "\xc3\x28"}'):
            response = await http.post("/api/verify", content=content)
            assert response.status_code == 422, response.text
            assert response.json()["detail"][0]["type"] == "json_invalid"


async def test_head_on_probe_paths_is_200_without_a_body(served: tuple[Service, str]) -> None:
    """HEAD on /health, /metrics and / answers like GET, headers only."""
    _, base = served
    async with httpx.AsyncClient(base_url=base) as http:
        for path in ("/health", "/metrics", "/"):
            response = await http.head(path)
            assert response.status_code == 200, path
            assert response.content == b"", path


async def test_trailing_slash_does_not_redirect_to_the_host_header(
    served: tuple[Service, str],
) -> None:
    """A trailing slash with a forged Host is a 404 with no Location (no open redirect)."""
    _, base = served
    async with httpx.AsyncClient(base_url=base) as http:
        for path in ("/health/", "/api/events/", "/api/status/"):
            response = await http.get(path, headers={"host": "evil.example"})
            assert response.status_code == 404, (path, response.status_code)
            assert "location" not in response.headers


async def test_security_headers_on_the_dashboard_and_the_api(served: tuple[Service, str]) -> None:
    """Every answer says nosniff; the dashboard also forbids framing and sets a narrow CSP."""
    _, base = served
    async with httpx.AsyncClient(base_url=base) as http:
        page = await http.get("/")
        api = await http.get("/api/events")
        script = await http.get("/static/js/main.js")
        refused = await http.post("/api/worker/pause")
    for response in (page, api, script, refused):
        assert response.headers["x-content-type-options"] == "nosniff", response.url
    assert page.headers["x-frame-options"] == "DENY"
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy


async def test_405_names_every_method_of_the_path(served: tuple[Service, str]) -> None:
    """A method a path does not take is 405 with Allow listing every method it does take."""
    _, base = served
    async with httpx.AsyncClient(base_url=base) as http:
        expectations = await http.delete("/api/expectations")
        health = await http.post("/health")
        verify = await http.get("/api/verify")
    assert expectations.status_code == 405
    assert expectations.headers["allow"] == "GET, POST"
    assert health.status_code == 405 and health.headers["allow"] == "GET, HEAD"
    assert verify.status_code == 405 and verify.headers["allow"] == "POST"
    assert "use GET, POST" in expectations.json()["error"]


async def test_audit_names_the_role_and_the_address_of_a_gap_consent(
    served: tuple[Service, str],
) -> None:
    """The audit log shows 'admin' (nothing derived from the token) and the gap consent's
    remote address."""
    _, base = served
    async with httpx.AsyncClient(base_url=base, headers=AUTH) as http:
        consent = await http.post("/api/gaps/acknowledge", json={"through_oldest": True})
        assert consent.status_code in (200, 409), consent.text
        await http.post("/api/worker/pause")
        entries = (await http.get("/api/audit")).json()["entries"]
    assert entries and all(entry["actor"] == "admin" for entry in entries)
    consents = [e for e in entries if e["action"] == "consent_to_gap"]
    pauses = [e for e in entries if e["action"] == "pause_worker"]
    assert pauses[0]["remote_addr"] == "127.0.0.1"
    if consent.status_code == 200:
        assert consents[0]["remote_addr"] == "127.0.0.1"
