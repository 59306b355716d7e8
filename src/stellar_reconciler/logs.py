"""Structured logging for our events and for the libraries': JSON lines, or human-readable
lines in a terminal, with configured secrets scrubbed from every rendered line."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from stellar_reconciler.config import Settings
from stellar_reconciler.redaction import Redactor

_SHARED: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def resolve_format(log_format: str, stream: TextIO) -> str:
    """`json` or `console`; `auto` means console on a terminal, JSON otherwise."""
    if log_format != "auto":
        return log_format
    isatty = getattr(stream, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


class _ScrubRendered:
    """The last processor: a rendered line with every configured secret replaced.

    Scrubbing the rendered text, not the event's fields, also covers tracebacks, reprs of
    exceptions and whatever a library put into its message.
    """

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    def __call__(self, _logger: Any, _method: str, rendered: MutableMapping[str, Any]) -> Any:
        if isinstance(rendered, str | bytes):
            text = rendered if isinstance(rendered, str) else rendered.decode()
            return self.redactor.text(text)
        return rendered


def configure_logging(
    level: str = "info",
    *,
    stream: TextIO | None = None,
    log_format: str = "auto",
    redactor: Redactor | None = None,
) -> None:
    """Send every log record, ours and the libraries', to `stream` (stderr by default)."""
    output = stream or sys.stderr
    numeric = logging.getLevelName(level.upper())
    processors: list[structlog.types.Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta
    ]
    if resolve_format(log_format, output) == "console":
        # The console renderer lays out tracebacks itself; colours only on a real terminal.
        colors = bool(getattr(output, "isatty", lambda: False)())
        processors.append(structlog.dev.ConsoleRenderer(colors=colors))
    else:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    if redactor:
        processors.append(_ScrubRendered(redactor))
    handler = logging.StreamHandler(output)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=_SHARED, processors=processors)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # uvicorn's access log is one line per request, /health polls included: too chatty at info.
    logging.getLogger("uvicorn.access").setLevel(max(numeric, logging.WARNING))
    logging.getLogger("httpx").setLevel(max(numeric, logging.WARNING))
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def configure_logging_for(
    settings: Settings, *, level: str | None = None, stream: TextIO | None = None
) -> None:
    """configure_logging with the level (unless given), format and secrets of `settings`."""
    configure_logging(
        level or settings.log_level,
        stream=stream,
        log_format=settings.log_format,
        redactor=Redactor.from_settings(settings),
    )
