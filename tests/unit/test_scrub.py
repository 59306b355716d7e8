"""ScrubSecrets: responses leave without configured secrets, JSON stays valid, and bodies
without a secret (or without a body, as HEAD) go out byte for byte."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from stellar_reconciler.api.scrub import ScrubSecrets
from stellar_reconciler.redaction import Redactor

SECRET = "key-7f6e5d4c"


def app(static: Path) -> Starlette:
    async def leaky(_request: Request) -> JSONResponse:
        return JSONResponse({"reason": f"HTTP 401 from http://h/?apikey={SECRET}", "n": 7})

    async def events(_request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b": ping\n\n"
            yield f"data: {json.dumps({'error': SECRET, 'ledger': 12})}\n\n".encode()

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def image(_request: Request) -> Response:
        return Response(SECRET.encode(), media_type="application/octet-stream")

    routes = [
        Route("/leaky", leaky),
        Route("/events", events),
        Route("/image", image),
        Mount("/static", StaticFiles(directory=static)),
    ]
    built = Starlette(routes=routes)
    built.add_middleware(ScrubSecrets, redactor=Redactor([SECRET]))
    return built


async def test_json_sse_and_text_are_scrubbed(tmp_path: Path) -> None:
    """A JSON body, an event stream and a static text file lose the secret; JSON and the
    event's data stay parseable with their numbers; Content-Length matches the new body."""
    (tmp_path / "page.html").write_text(f"<p>{SECRET}</p>")
    transport = httpx.ASGITransport(app=app(tmp_path))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        leaky = await http.get("/leaky")
        assert leaky.json() == {"reason": "HTTP 401 from http://h/?apikey=***", "n": 7}
        assert int(leaky.headers["content-length"]) == len(leaky.content)
        stream = (await http.get("/events")).text
        data = next(line for line in stream.splitlines() if line.startswith("data:"))
        assert json.loads(data[5:]) == {"error": "***", "ledger": 12}
        page = await http.get("/static/page.html")
        assert page.text == "<p>***</p>"
        assert int(page.headers["content-length"]) == len(page.content)


async def test_untouched_bodies_keep_their_bytes_and_headers(tmp_path: Path) -> None:
    """Binary bodies pass as they are; HEAD keeps the file's real Content-Length."""
    (tmp_path / "app.js").write_text("const clean = 1;\n" * 100)
    transport = httpx.ASGITransport(app=app(tmp_path))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        assert (await http.get("/image")).content == SECRET.encode()
        head = await http.head("/static/app.js")
        assert head.status_code == 200 and head.headers["content-length"] == "1700"
        get = await http.get("/static/app.js")
        assert get.text == "const clean = 1;\n" * 100
