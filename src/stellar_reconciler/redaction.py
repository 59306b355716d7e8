"""Redactor: the safety net that keeps configured secrets out of everything the service shows.

`config.redact_url` hides secrets where a URL is shown on purpose; this catches the places
nobody thought of (an RPC error body echoing the request, a library's exception text, a log
line written by a dependency). Log lines are scrubbed as rendered (logs.py) and API responses
at the edge (api/scrub.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

from stellar_reconciler.config import Secret, Settings, settings_about

MASK = "***"
# Replacing a value this short everywhere would mangle ordinary text and numbers more than it
# protects: such a value is guessable anyway, and redact_url still hides it inside URLs.
MIN_SECRET_LENGTH = 4


def url_secrets(url: str) -> list[str]:
    """The user name, password and query values of `url`."""
    parts = urlsplit(url)
    found = [parts.username or "", parts.password or ""]
    found += [value for _name, value in parse_qsl(parts.query, keep_blank_values=True)]
    return found


class Redactor:
    """Replaces each configured secret, in every form it is likely to be written in (as is,
    percent-encoded or decoded, escaped inside a JSON string), with `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) < MIN_SECRET_LENGTH:
                continue
            for form in (
                secret,
                unquote(secret),
                quote(secret, safe=""),
                quote_plus(secret, safe=""),
            ):
                forms.add(form)
                forms.add(json.dumps(form)[1:-1])
        # Longest first, so a secret that contains another is replaced whole.
        self.forms = tuple(
            sorted((f for f in forms if len(f) >= MIN_SECRET_LENGTH), key=len, reverse=True)
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Redactor:
        """Every secret the settings hold, as their fields mark them (config.Secret)."""
        secrets: list[str] = []
        for name, about in settings_about().items():
            value = getattr(settings, name)
            values = list(value) if isinstance(value, tuple) else [str(value)]
            if about.secret is Secret.VALUE:
                secrets += values
            elif about.secret is Secret.URLS:
                for text in values:
                    for url in text.split(","):
                        secrets += url_secrets(url.strip())
        return cls(secrets)

    def __bool__(self) -> bool:
        return bool(self.forms)

    def finds(self, text: str) -> bool:
        return any(form in text for form in self.forms)

    def text(self, text: str) -> str:
        for form in self.forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def value(self, value: Any) -> Any:
        """`value` (JSON-like) with every string in it, keys included, redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value

    def json_text(self, text: str) -> str:
        """A JSON document redacted string by string, so numbers and structure stay intact;
        text that is not JSON is redacted as text."""
        if not self.finds(text):
            return text
        try:
            document = json.loads(text)
        except ValueError:
            return self.text(text)
        return json.dumps(self.value(document), ensure_ascii=False, separators=(",", ":"))
