"""Logging: JSON lines or console lines (LOG_FORMAT, console by default on a terminal), with
configured secrets scrubbed from every rendered line, ours and the libraries'."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator

import pytest
import structlog

from stellar_reconciler.config import Settings
from stellar_reconciler.errors import ConfigError
from stellar_reconciler.logs import configure_logging, configure_logging_for
from stellar_reconciler.redaction import Redactor

SECRET = "s3cret-key-9f8e7d"
log = structlog.get_logger("tests.logs")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_format_writes_one_json_object_per_line() -> None:
    """LOG_FORMAT=json: each record is a JSON object with the event and its fields."""
    stream = io.StringIO()
    configure_logging("info", stream=stream, log_format="json")
    log.info("batch_committed", first=5, last=9)
    line = json.loads(stream.getvalue().strip())
    assert line["event"] == "batch_committed" and line["first"] == 5 and line["level"] == "info"


def test_console_format_is_human_readable() -> None:
    """LOG_FORMAT=console: the event and key=value pairs on one line, not JSON, no colour
    codes when the stream is not a terminal."""
    stream = io.StringIO()
    configure_logging("info", stream=stream, log_format="console")
    log.warning("poll_failed", attempts=3)
    text = stream.getvalue()
    assert "poll_failed" in text and "attempts=3" in text and "warning" in text
    assert "\x1b[" not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_default_format_is_console_on_a_terminal_and_json_otherwise() -> None:
    """Unset LOG_FORMAT: a real pseudo-terminal gets console lines, a pipe gets JSON."""
    controller, terminal_fd = os.openpty()
    with os.fdopen(terminal_fd, "w") as terminal:
        configure_logging("info", stream=terminal, log_format="auto")
        log.info("on_terminal", n=1)
        terminal.flush()
        shown = os.read(controller, 65536).decode()
    os.close(controller)
    assert "on_terminal" in shown and not shown.lstrip().startswith("{")
    read_fd, write_fd = os.pipe()
    with os.fdopen(write_fd, "w") as pipe:
        configure_logging("info", stream=pipe, log_format="auto")
        log.info("on_pipe", n=2)
    with os.fdopen(read_fd) as reader:
        assert json.loads(reader.read())["event"] == "on_pipe"


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_secrets_are_scrubbed_from_fields_messages_and_tracebacks(log_format: str) -> None:
    """A secret in an event field, a library's message and an exception's traceback is
    replaced by *** in the rendered line, in both formats."""
    stream = io.StringIO()
    configure_logging("info", stream=stream, log_format=log_format, redactor=Redactor([SECRET]))
    log.error("rpc_failed", url=f"http://h/?apikey={SECRET}")
    logging.getLogger("some.library").warning("connecting with %s", SECRET)
    try:
        raise ValueError(f"bad key {SECRET}")
    except ValueError:
        log.exception("crashed")
    text = stream.getvalue()
    assert SECRET not in text
    assert text.count("***") >= 3 and "rpc_failed" in text and "ValueError" in text


def test_settings_supply_format_and_every_secret() -> None:
    """configure_logging_for(settings) scrubs the RPC URL's user info and query values, the
    database password and the tokens."""
    settings = Settings.from_env(
        stellar_rpc_url="http://user-a1b2:pw-c3d4e5@127.0.0.1:1/?apikey=key-f6a7b8",
        database_url="postgresql://postgres:dbpw-9c8b7a@127.0.0.1:5432/x",
        admin_token="admin-token-0123456789",
        read_token="read-token-0123456789",
        webhook_secret="hook-secret-0123456789",
        log_format="JSON",
    )
    assert settings.log_format == "json"
    stream = io.StringIO()
    configure_logging_for(settings, stream=stream)
    secrets = [
        "user-a1b2",
        "pw-c3d4e5",
        "key-f6a7b8",
        "dbpw-9c8b7a",
        "admin-token-0123456789",
        "read-token-0123456789",
        "hook-secret-0123456789",
    ]
    log.info("everything", values=secrets)
    line = json.loads(stream.getvalue())
    assert line["values"] == ["***"] * len(secrets)


def test_bad_log_format_names_the_variable() -> None:
    """LOG_FORMAT=xml stops start-up with a message naming LOG_FORMAT and its values."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(log_format="xml")
    assert caught.value.variable == "LOG_FORMAT" and "json or console" in str(caught.value)
