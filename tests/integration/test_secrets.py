"""No configured secret anywhere the service shows it: every GET endpoint, the dashboard,
the event stream and every line on stderr, with an RPC that rejects the credentials."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from stellar_reconciler.config import redact_url
from tests.integration.harness import wait_for_sync

RPC_USER = "rpcuser-5b1e3a"
RPC_PASSWORD = "rpcpass-9d27f0"
API_KEY = "apikey-SECRET-4c8e11"
DB_PASSWORD = "hunter2-db-77a3"
ADMIN_TOKEN = "admin-secret-token-0f9e8d7c"
READ_TOKEN = "read-secret-token-1a2b3c4d"
WEBHOOK_SECRET = "webhook-secret-value-5e6f7a8b"
WEBHOOK_KEY = "webhook-url-key-99aa01"
# Server-Sent Events endpoints: they never end, so they are read apart.
STREAMS = ("/api/stream", "/api/events/stream")
SECRETS = (
    RPC_USER,
    RPC_PASSWORD,
    API_KEY,
    DB_PASSWORD,
    ADMIN_TOKEN,
    READ_TOKEN,
    WEBHOOK_SECRET,
    WEBHOOK_KEY,
)


class _Rejecting(BaseHTTPRequestHandler):
    """An RPC provider rejecting the key, echoing the request line as some do."""

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        body = json.dumps(
            {"error": f"invalid API key in {self.path}", "auth": self.headers.get("authorization")}
        ).encode()
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture(params=[401, 500])
def rejecting_rpc(request: pytest.FixtureRequest) -> Iterator[str]:
    """A loopback RPC answering every call with HTTP 401 (or 500); yields its URL with
    credentials in the user info and the query."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Rejecting)
    server.status = request.param  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield f"http://{RPC_USER}:{RPC_PASSWORD}@127.0.0.1:{port}/rpc?apikey={API_KEY}"
    finally:
        server.shutdown()
        server.server_close()


def with_password(database_url: str) -> str:
    """PostgreSQL under trust auth accepts any password: give the URL one to leak."""
    return database_url.replace("://postgres@", f"://postgres:{DB_PASSWORD}@", 1)


def listening_url(log: Path) -> str | None:
    match = re.search(r'"url": "(http://127\.0\.0\.1:\d+)/"', log.read_text())
    return match[1] if match else None


def test_no_secret_in_any_endpoint_or_log_line(
    database_url: str, rejecting_rpc: str, tmp_path: Path
) -> None:
    """RPC rejecting with credentials in its URL, a database password, tokens and a webhook
    secret: no response body and no stderr line contains any of them."""
    stderr_path = tmp_path / "stderr.log"
    env = {
        **os.environ,
        "DATABASE_URL": with_password(database_url),
        "STELLAR_RPC_URL": rejecting_rpc,
        "BIND_ADDR": "127.0.0.1:0",
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "READ_TOKEN": READ_TOKEN,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "WEBHOOK_URLS": f"http://127.0.0.1:9/hook?key={WEBHOOK_KEY}",
        "POLL_INTERVAL_SECS": "0.1",
        "RPC_MAX_ATTEMPTS": "2",
        "RPC_INITIAL_BACKOFF_MS": "5",
        "RPC_MAX_BACKOFF_SECS": "0.05",
        "LOG_LEVEL": "debug",
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }
    script = Path(sys.executable).parent / "reconciler"
    shown: dict[str, str] = {}
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [str(script), "run"], env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
        try:
            base = wait_for_sync(lambda: listening_url(stderr_path), 30, "the HTTP server")
            read = {"Authorization": f"Bearer {READ_TOKEN}"}
            with httpx.Client(base_url=base, timeout=10) as http:
                health = wait_for_sync(
                    lambda: (body := http.get("/health").json())["last_error"] and body,
                    30,
                    "the RPC failure to show in /health",
                )
                assert health["healthy"] is False
                paths = http.get("/openapi.json").json()["paths"]
                for path, operations in paths.items():
                    # The streams never end; each is read below, one event.
                    if "get" in operations and path not in STREAMS:
                        concrete = re.sub(r"\{[^}]+\}", "1", path)
                        shown[concrete] = http.get(concrete, headers=read).text
                for path in ("/", "/docs", "/openapi.json", "/static/js/main.js"):
                    shown[path] = http.get(path).text
                with http.stream("GET", "/api/stream", headers=read) as response:
                    lines = response.iter_lines()
                    shown["/api/stream"] = next(line for line in lines if line.startswith("data:"))
                # Nothing is indexed (the RPC rejects every call): only its headers show.
                with http.stream("GET", "/api/events/stream", headers=read) as response:
                    shown["/api/events/stream"] = str(response.headers)
                status = json.loads(shown["/api/status"])
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    log = stderr_path.read_text()
    shown["stderr"] = log
    assert status["settings"]["stellar_rpc_url"] == redact_url(rejecting_rpc)
    assert "service_starting" in log and "***@127.0.0.1" in log
    assert len(shown) > 20, sorted(shown)
    for where, text in shown.items():
        leaked = [secret for secret in SECRETS if secret in text]
        assert not leaked, f"{where} shows {leaked}"
