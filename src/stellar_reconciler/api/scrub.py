"""ScrubSecrets: the API's last line of defence against showing a configured secret.

Every response that is text (JSON, Server-Sent Events, Prometheus text, HTML) passes through
the Redactor before it leaves; JSON is redacted string by string so its structure and numbers
stay intact. Responses that carry no secret (nearly all of them) go out unchanged.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stellar_reconciler.redaction import Redactor

_TEXT_TYPES = ("application/json", "text/")


class ScrubSecrets:
    """Pure ASGI middleware: buffers a response with a Content-Length to redact it whole;
    redacts a stream (no Content-Length, e.g. /api/stream) chunk by chunk, since each
    chunk there is one whole event."""

    def __init__(self, app: ASGIApp, redactor: Redactor) -> None:
        self.app = app
        self.redactor = redactor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.redactor:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        buffered: list[bytes] = []
        is_json = streaming = passthrough = False

        async def scrubbing_send(message: Message) -> None:
            nonlocal start, is_json, streaming, passthrough
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                content_type = headers.get("content-type", "")
                passthrough = not content_type.startswith(_TEXT_TYPES)
                if passthrough:
                    await send(message)
                    return
                is_json = content_type.startswith("application/json")
                streaming = "content-length" not in headers
                start = message
                if streaming:
                    await send(start)
                return
            if message["type"] != "http.response.body" or passthrough:
                await send(message)
                return
            body = message.get("body", b"")
            if streaming:
                await send({**message, "body": self._scrub(body, is_json)})
                return
            buffered.append(body)
            if message.get("more_body", False):
                return
            original = b"".join(buffered)
            whole = self._scrub(original, is_json)
            if start is None:  # pragma: no cover - ASGI sends the start message first
                raise RuntimeError("response body before its start message")
            if whole is not original:
                # Only a changed body gets a new length (a HEAD answer has none to measure).
                headers = MutableHeaders(raw=list(start.get("headers", [])))
                headers["content-length"] = str(len(whole))
                start = {**start, "headers": headers.raw}
            await send(start)
            await send({"type": "http.response.body", "body": whole, "more_body": False})

        await self.app(scope, receive, scrubbing_send)

    def _scrub(self, body: bytes, is_json: bool) -> bytes:
        text = body.decode("utf-8", errors="replace")
        if not self.redactor.finds(text):
            return body
        if is_json:
            return self.redactor.json_text(text).encode()
        lines = [
            "data: " + self.redactor.json_text(line[5:].strip())
            if line.startswith("data:")
            else self.redactor.text(line)
            for line in text.split("\n")
        ]
        return "\n".join(lines).encode()
