"""Settings: the only place that reads the environment (and `.env`).

`Settings.from_env()` is called once, by the CLI; nothing reads settings at import time.
A bad value becomes a `ConfigError` naming the variable, the value and the expected form.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from dotenv import dotenv_values
from pydantic import Field, JsonValue, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from stellar_sdk import StrKey, scval, xdr

from stellar_reconciler.errors import ConfigError

TESTNET_RPC_URL = "https://soroban-testnet.stellar.org"
# A network passphrase names a network publicly; it is not a secret.
TESTNET_PASSPHRASE = "Test SDF Network ; September 2015"  # noqa: S105

# Soroban symbols are at most 32 characters of [a-zA-Z0-9_].
_SYMBOL = re.compile(r"^[A-Za-z0-9_]{1,32}$")
_URL = re.compile(r"^https?://[^\s/?#]+(/\S*)?$")
_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]*@")
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")


def sqlalchemy_url(url: str) -> str:
    """A DATABASE_URL with the driver SQLAlchemy should use (postgres:// and postgresql://
    become postgresql+psycopg://); the one place that knows, for the service, bench and tests."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def libpq_url(url: str) -> str:
    """A PostgreSQL DATABASE_URL (in any of the forms `sqlalchemy_url` takes) as libpq and
    psycopg read it: postgresql://, without SQLAlchemy's driver name."""
    return "postgresql://" + sqlalchemy_url(url).split("://", 1)[1]


def redact_url(url: str) -> str:
    """`url` with its user info and every query value hidden, fit for a log, an error or a page.

    RPC providers put API keys in either place (`https://user:key@host/`, `?apikey=...`); the
    host and path stay, since they are what an operator needs to tell which endpoint failed.
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(
        name + "=***" if value else name
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    )
    if parts.query and not query:
        query = "***"
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


ENV_FILE = ".env"
# Keys a .env may hold that are not settings of ours but are read by something we run.
_FOREIGN_ENV_KEYS = {"STELLAR_RPC_FIXTURES", "REQUIRE_POSTGRES", "PYTHONPATH", "TZ"}


def env_file_warnings(path: str = ENV_FILE) -> list[str]:
    """One warning per key in `path` that is not a setting (a typo like DATABSE_URL would
    otherwise be ignored silently), naming the nearest setting."""
    if not Path(path).is_file():
        return []
    names = [name.upper() for name in Settings.model_fields]
    warnings = []
    for key in dotenv_values(path):
        upper = key.upper()
        if upper in names or upper in _FOREIGN_ENV_KEYS:
            continue
        nearest = difflib.get_close_matches(upper, names, n=1, cutoff=0.6)
        hint = f"; did you mean {nearest[0]}?" if nearest else ""
        warnings.append(f"{path}: {key} is not a setting and is ignored{hint}")
    return warnings


def contract_id_problem(value: str) -> str | None:
    """Why `value` is not a contract strkey (None when it is one), in words a user can act on."""
    if StrKey.is_valid_contract(value):
        return None
    if not value.startswith("C"):
        return f"{value!r} does not start with C (a contract id does; G... is an account)"
    if len(value) != 56:
        return f"{value!r} has {len(value)} characters, a contract id has 56"
    try:
        raw = base64.b32decode(value)
    except binascii.Error:
        return f"{value!r} has characters outside A-Z and 2-7"
    if _crc16_xmodem(raw[:-2]) != int.from_bytes(raw[-2:], "little"):
        return f"{value!r} has a bad checksum (a character is mistyped or swapped)"
    return f"{value!r} is not a contract id"


def _crc16_xmodem(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _split_list(value: Any, separator: str = ",") -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(separator) if part.strip())
    return value


def topic_segment_to_xdr(segment: str) -> str:
    """Turn one EVENT_TOPICS segment into what getEvents expects: '*', '**' or a base64 ScVal."""
    if segment in ("*", "**"):
        return segment
    try:
        raw = base64.b64decode(segment, validate=True)
        xdr.SCVal.from_xdr_bytes(raw)
    except (binascii.Error, ValueError, IndexError, EOFError):
        pass
    else:
        return segment
    if _SYMBOL.match(segment):
        return str(scval.to_symbol(segment).to_xdr())
    raise ValueError(segment)


class Shown(Enum):
    """How a setting appears in the safe view of the settings (/api/status)."""

    NOT = "not"  # left out: a secret, or not worth showing
    PLAIN = "plain"  # as it is (tuples as lists)
    REDACTED_URL = "redacted_url"  # user info and query values hidden (API keys live there)
    DATABASE_KIND = "database_kind"  # sqlite or postgresql, never the URL and its password
    WHETHER_SET = "whether_set"  # true or false, never the secret itself
    COUNT = "count"  # how many, never which


class Secret(Enum):
    """What of a setting's value the Redactor keeps out of logs and answers."""

    NONE = "none"
    VALUE = "value"  # the whole value (a token, a key)
    URLS = "urls"  # the user info and query values of each of its comma-separated URLs


def setting(
    default: Any,
    *,
    meaning: str,
    form: str,
    shown: Shown,
    shown_as: str = "",
    readme_default: str = "",
    secret: Secret = Secret.NONE,
    **constraints: Any,
) -> Any:
    """A Settings field that describes itself: `meaning` is its row in the README's table,
    `form` what the error for a bad value and `--help` say a good value looks like, `shown`
    how /api/status shows it (under `shown_as` when not its own name), `readme_default`
    its default in the README when the value alone does not say it all, and `secret` what
    of it never appears in a log line or an answer."""
    extra: dict[str, JsonValue] = {"form": form, "shown": shown.value, "secret": secret.value}
    if shown_as:
        extra["shown_as"] = shown_as
    if readme_default:
        extra["readme_default"] = readme_default
    return Field(default, description=meaning, json_schema_extra=extra, **constraints)


@dataclass(frozen=True)
class About:
    """One setting as its field describes it (see `setting`)."""

    name: str
    default: Any
    meaning: str
    form: str
    shown: Shown
    shown_as: str
    readme_default: str
    secret: Secret = Secret.NONE

    @property
    def variable(self) -> str:
        return self.name.upper()


class Settings(BaseSettings):
    """Every setting of the service. Each field says, once, what it means (the README's
    table), what a good value looks like (errors and `--help`) and how /api/status shows it."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    bind_addr: str = setting(
        "127.0.0.1:3000",
        meaning="where the HTTP server listens (`HOST:PORT`)",
        form="HOST:PORT, for example 127.0.0.1:3000 or 0.0.0.0:8080",
        shown=Shown.PLAIN,
    )
    database_url: str = setting(
        "sqlite:///./reconciler.db",
        meaning="`sqlite:///path` or `postgresql://user:pass@host:5432/db`",
        form="sqlite:///path/to/file.db or postgresql://user@host:5432/dbname",
        shown=Shown.DATABASE_KIND,
        shown_as="database",
        secret=Secret.URLS,
    )
    stellar_rpc_url: str = setting(
        TESTNET_RPC_URL,
        meaning="the Stellar RPC endpoint to follow",
        form="an http:// or https:// URL of a Stellar RPC endpoint",
        shown=Shown.REDACTED_URL,
        secret=Secret.URLS,
    )
    service_name: str = setting(
        "stellar-reconciler",
        meaning="shown in `/api/status` and sent as the RPC user agent",
        form="a non-empty name of at most 64 characters",
        shown=Shown.PLAIN,
        min_length=1,
        max_length=64,
    )
    poll_interval_secs: float = setting(
        0.5,
        meaning=(
            "how often to ask the RPC (`getHealth`, cheap) whether a ledger closed, when caught up"
        ),
        form="a number of seconds greater than 0 and at most 3600, for example 0.5",
        shown=Shown.PLAIN,
        gt=0,
        le=3600,
    )
    rpc_max_attempts: int = setting(
        5,
        meaning="attempts per RPC call before a transient fault counts as a failed poll",
        form="a whole number from 1 to 100",
        shown=Shown.PLAIN,
        ge=1,
        le=100,
    )
    rpc_initial_backoff_ms: int = setting(
        250,
        meaning="first retry delay; doubles each retry, plus up to as much again of random jitter",
        form="a whole number of milliseconds from 1 to 60000",
        shown=Shown.PLAIN,
        ge=1,
        le=60000,
    )
    rpc_max_backoff_secs: float = setting(
        5.0,
        meaning=("cap on one retry delay (a `Retry-After` from the server is honoured above it)"),
        form="a number of seconds greater than 0 and at most 600",
        shown=Shown.PLAIN,
        gt=0,
        le=600,
    )
    rpc_timeout_secs: float = setting(
        30.0,
        meaning="timeout of one RPC request",
        form="a number of seconds greater than 0 and at most 600",
        shown=Shown.PLAIN,
        gt=0,
        le=600,
    )
    poll_failure_max_backoff_secs: float = setting(
        60.0,
        meaning=(
            "cap on the wait between failed polls (it doubles from `POLL_INTERVAL_SECS`; the "
            "first good poll resets it)"
        ),
        form="a number of seconds greater than 0 and at most 3600",
        shown=Shown.PLAIN,
        gt=0,
        le=3600,
    )
    rpc_fault_max_backoff_secs: float = setting(
        300.0,
        meaning=(
            "the same cap for faults a retry inside one call cannot fix (HTTP 401/403/520, an "
            "HTML or broken body, JSON-RPC -32600/-32601/-32602/-32700)"
        ),
        form="a number of seconds greater than 0 and at most 3600",
        shown=Shown.PLAIN,
        gt=0,
        le=3600,
    )
    failure_summary_secs: float = setting(
        60.0,
        meaning='while polls keep failing, one "still failing" log line at most this often',
        form="a number of seconds greater than 0 and at most 86400",
        shown=Shown.PLAIN,
        gt=0,
        le=86400,
    )
    tx_outcome_checks_per_poll: int = setting(
        50,
        meaning=(
            "`getTransaction` calls per poll for expected records pinned to a `tx_hash` whose "
            "deadline passed without an event (they settle `failed_on_chain`, `not_found` or "
            "`missing_expected`); `0` never asks and settles them `missing_expected`"
        ),
        form="a whole number of getTransaction calls per poll from 0 to 10000 (0: never ask)",
        shown=Shown.PLAIN,
        ge=0,
        le=10000,
    )
    start_ledger: str = setting(
        "oldest",
        meaning=(
            "where an **empty** database starts: a ledger number, `oldest` (oldest the RPC "
            "keeps) or `latest`"
        ),
        form="a ledger number (1 or more), 'oldest' or 'latest'",
        shown=Shown.PLAIN,
    )
    contract_ids: Annotated[tuple[str, ...], NoDecode] = setting(
        (),
        meaning="comma-separated contract ids (`C...`) to index",
        form="comma-separated contract strkeys (C..., 56 characters), or empty for all",
        shown=Shown.PLAIN,
        readme_default="empty (all)",
    )
    event_topics: Annotated[tuple[tuple[str, ...], ...], NoDecode] = setting(
        (),
        meaning=(
            "topic filters, `;`-separated; each is 1-4 comma-separated segments: a symbol name, "
            "a base64 ScVal, `*` (any one segment), optionally ending in `**` (any number). "
            "Example: `transfer,*,*,**;mint,**`"
        ),
        form=(
            "topic filters separated by ';', each 1-4 comma-separated segments: a symbol name, "
            "a base64 ScVal, '*' (one segment), and optionally a trailing '**', e.g. transfer,*,*"
        ),
        shown=Shown.PLAIN,
        readme_default="empty (all)",
    )
    batch_max_ledgers: int = setting(
        1000,
        meaning="most ledgers in one batch (batches aim at ~10,000 events)",
        form="a whole number of ledgers from 1 to 10000",
        shown=Shown.PLAIN,
        ge=1,
        le=10000,
    )
    catch_up_process_ledgers: int = setting(
        0,
        meaning=(
            "when above 0, a backlog of at least this many ledgers is fetched and decoded in a "
            "second process (e.g. `1000`); off by default: one process was as fast and ~85 MB "
            "smaller when measured (see [docs/benchmarks.md](docs/benchmarks.md))"
        ),
        form="a whole number of ledgers (0 keeps catch-up in one process)",
        shown=Shown.PLAIN,
        ge=0,
    )
    log_level: Literal["debug", "info", "warning", "error"] = setting(
        "info",
        meaning="`debug`, `info`, `warning` or `error`; logs go to stderr",
        form="one of debug, info, warning, error",
        shown=Shown.NOT,
    )
    # "auto" is the default only: console on a terminal, JSON lines otherwise.
    log_format: Literal["auto", "json", "console"] = setting(
        "auto",
        meaning="`json` (one object per line) or `console` (human-readable lines)",
        form="json or console (unset: console when stderr is a terminal, else json)",
        shown=Shown.NOT,
        readme_default="console on a terminal, else `json`",
    )
    verify_every_ledgers: int = setting(
        64,
        meaning="re-verify stored ledgers against the RPC every so many ledgers (`0`: off)",
        form="a whole number of ledgers (0 turns periodic re-verification off)",
        shown=Shown.PLAIN,
        ge=0,
    )
    admin_token: str = setting(
        "",
        meaning="bearer token for state-changing endpoints; empty disables them (403)",
        form="a secret of at least 16 characters, or empty to disable state-changing endpoints",
        shown=Shown.WHETHER_SET,
        shown_as="admin_enabled",
        secret=Secret.VALUE,
    )
    read_token: str = setting(
        "",
        meaning="when set, the read endpoints under `/api/` need it (or the admin token)",
        form="a secret of at least 16 characters, or empty to leave read endpoints open",
        shown=Shown.WHETHER_SET,
        shown_as="read_token_required",
        secret=Secret.VALUE,
    )
    webhook_urls: Annotated[tuple[str, ...], NoDecode] = setting(
        (),
        meaning="comma-separated URLs that receive a signed JSON POST per new discrepancy",
        form="comma-separated http:// or https:// URLs",
        shown=Shown.COUNT,
        shown_as="webhooks",
        secret=Secret.URLS,
    )
    webhook_secret: str = setting(
        "",
        meaning="HMAC-SHA256 key for the `X-Reconciler-Signature` header of webhooks",
        form=(
            "a secret of at least 16 characters whenever WEBHOOK_URLS is set (webhooks are "
            "signed with it)"
        ),
        shown=Shown.NOT,
        secret=Secret.VALUE,
    )
    unexpected_event_contracts: Annotated[tuple[str, ...], NoDecode] = setting(
        (),
        meaning="contracts whose events no expectation claims are reported as `unexpected`",
        form="comma-separated contract strkeys (C...) whose unclaimed events are reported",
        shown=Shown.NOT,
    )
    lake_url: str = setting(
        "",
        meaning=(
            "a SEP-54 data lake: `s3://bucket/prefix`, `gs://bucket/prefix` or `file:///dir` "
            "(ledgers older than the RPC keeps are read from it, and re-verification checks "
            "stored ledgers against it too; see below)"
        ),
        form=(
            "empty (no lake), or a SEP-54 lake: s3://bucket/prefix, gs://bucket/prefix or "
            "file:///absolute/dir"
        ),
        shown=Shown.NOT,
        readme_default="empty (no lake)",
        secret=Secret.URLS,
    )
    lake_endpoint_url: str = setting(
        "",
        meaning="an S3-compatible endpoint instead of AWS (`http://` allowed for local servers)",
        form="empty, or the http:// or https:// URL of an S3-compatible endpoint",
        shown=Shown.NOT,
        secret=Secret.URLS,
    )
    lake_anonymous: bool = setting(
        False,
        meaning=(
            "`true` reads a public bucket unsigned; otherwise credentials come from the standard "
            "`AWS_*` / `GOOGLE_*` variables"
        ),
        form="true to read a public bucket without credentials, false to sign requests",
        shown=Shown.NOT,
    )
    lake_prefetch: int = setting(
        4,
        meaning="lake objects fetched ahead of the one being read (1-64)",
        form="a whole number of lake objects to fetch ahead, from 1 to 64",
        shown=Shown.NOT,
        ge=1,
        le=64,
    )
    backfill_chunk_ledgers: int = setting(
        10_000,
        meaning=(
            "`reconciler backfill` cuts its range into chunks of this many ledgers, each written "
            "in one transaction; on PostgreSQL each is a Procrastinate job (its schema is "
            "applied by `reconciler migrate` and at start-up) that `reconciler backfill` itself "
            "and any number of `reconciler backfill-worker` processes take (`--queue-only`: "
            "queue and wait, write none here); on SQLite the command writes them in order"
        ),
        form="a whole number of ledgers per backfill chunk, from 1 to 100000",
        shown=Shown.PLAIN,
        ge=1,
        le=100_000,
    )
    backfill_stalled_secs: float = setting(
        30.0,
        meaning=(
            "a backfill worker without a heartbeat this long is taken for dead and its chunk "
            "(never half-written) runs again"
        ),
        form=(
            "seconds without a heartbeat after which a backfill worker's chunk is retried, "
            "2 to 3600"
        ),
        shown=Shown.NOT,
        ge=2,
        le=3600,
    )
    nats_url: str = setting(
        "",
        meaning=(
            "NATS server(s), comma-separated (`nats://127.0.0.1:4222`): every stored event is "
            "published to JetStream once (see [docs/nats.md](docs/nats.md))"
        ),
        form="empty (off), or comma-separated nats:// or tls:// URLs, e.g. nats://127.0.0.1:4222",
        shown=Shown.REDACTED_URL,
        readme_default="empty (off)",
        secret=Secret.URLS,
    )
    nats_stream: str = setting(
        "STELLAR_EVENTS",
        meaning=(
            "the JetStream stream; created with subjects `NATS_SUBJECT_PREFIX.>` when missing"
        ),
        form="a JetStream stream name: 1-64 letters, digits, '_' or '-'",
        shown=Shown.PLAIN,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
    )
    nats_subject_prefix: str = setting(
        "stellar",
        meaning=(
            "events go to `PREFIX.<contract id>.<event name>`, new discrepancies to "
            "`PREFIX.discrepancies`, settled expected records to `PREFIX.expectations`"
        ),
        form="dot-separated tokens of letters, digits, '_' or '-', e.g. stellar",
        shown=Shown.PLAIN,
        pattern=r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64})*$",
    )
    # Leader and standbys (PostgreSQL, docs/standby.md).
    advertise_url: str = setting(
        "",
        meaning=(
            "where other replicas and clients reach this replica (at most 50 characters); a "
            "standby names it as the leader's address in its 409 answers and `/health` (see "
            "[docs/standby.md](docs/standby.md))"
        ),
        form=(
            "empty (http://BIND_ADDR/), or the http:// or https:// URL other replicas and "
            "clients reach this one at, at most 50 characters"
        ),
        shown=Shown.PLAIN,
        readme_default="`http://BIND_ADDR/`",
        max_length=50,
    )
    leader_retry_secs: float = setting(
        1.0,
        meaning=(
            "how often a standby tries to take the leader's lock, and the leader checks it "
            "still holds it (PostgreSQL)"
        ),
        form="a number of seconds from 0.1 to 60, for example 1",
        shown=Shown.PLAIN,
        ge=0.1,
        le=60,
    )
    leader_lease_secs: int = setting(
        10,
        meaning=(
            "a leader whose lock session stays silent this long (a frozen process) loses the "
            "lock to a standby"
        ),
        form="a whole number of seconds from 2 to 600, for example 10",
        shown=Shown.PLAIN,
        ge=2,
        le=600,
    )

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Read and validate the environment once; raise ConfigError on the first bad value."""
        try:
            settings = cls(**overrides)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else "settings"
            variable = name.upper()
            value = first.get("input")
            if isinstance(value, tuple | list):
                value = ",".join(map(str, value))
            # A database URL may carry a password; never echo it to a terminal or a log.
            shown = _PASSWORD.sub(r"\1***@", str(value))
            reason = ""
            error = (first.get("ctx") or {}).get("error")
            if first["type"] == "value_error" and isinstance(error, ValueError):
                reason = str(error)
            if name not in overrides and variable not in os.environ and name not in os.environ:
                reason = f"{reason} (set in {ENV_FILE})" if reason else f"set in {ENV_FILE}"
            raise ConfigError(
                variable, shown, expected_form(variable) or first["msg"], reason
            ) from None
        if settings.webhook_urls and len(settings.webhook_secret) < 16:
            raise ConfigError(
                "WEBHOOK_SECRET",
                "***" if settings.webhook_secret else "",
                settings_about()["webhook_secret"].form,
            )
        return settings

    @field_validator("bind_addr")
    @classmethod
    def _check_bind_addr(cls, value: str) -> str:
        match = _HOST_PORT.match(value.strip())
        if not match or not 0 <= int(match["port"]) < 65536:
            raise ValueError("bad address")
        return value.strip()

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        value = value.strip()
        if value.startswith(("sqlite:///", "sqlite+pysqlite:///")) and len(value) > len(
            "sqlite:///"
        ):
            folder = Path(value.split(":///", 1)[1].split("?", 1)[0]).parent
            if not folder.is_dir():
                # SQLite would say only "unable to open database file".
                raise ValueError(f"the folder {folder.resolve()} does not exist; create it first")
            return value
        if re.match(r"^postgres(ql)?(\+psycopg)?://[^/]*/\w", value):
            return value
        raise ValueError("bad database url")

    @field_validator("stellar_rpc_url")
    @classmethod
    def _check_rpc_url(cls, value: str) -> str:
        if not _URL.match(value.strip()):
            raise ValueError("bad url")
        return value.strip()

    @field_validator("lake_url")
    @classmethod
    def _check_lake_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme in ("s3", "gs") and parts.netloc:
            return value.rstrip("/")
        if parts.scheme == "file" and not parts.netloc and parts.path.startswith("/"):
            return value.rstrip("/")
        raise ValueError("bad lake url")

    @field_validator("lake_endpoint_url")
    @classmethod
    def _check_lake_endpoint_url(cls, value: str) -> str:
        value = value.strip()
        if value and not _URL.match(value):
            raise ValueError("bad url")
        return value

    @field_validator("start_ledger")
    @classmethod
    def _check_start_ledger(cls, value: str) -> str:
        value = value.strip().lower()
        if value in ("oldest", "latest") or (value.isdigit() and 0 < int(value) < 2**32):
            return value
        raise ValueError("bad start ledger")

    @field_validator("contract_ids", "unexpected_event_contracts", mode="before")
    @classmethod
    def _check_contract_ids(cls, value: Any) -> tuple[str, ...]:
        ids = _split_list(value)
        for contract_id in ids:
            problem = contract_id_problem(contract_id)
            if problem is not None:
                raise ValueError(problem)
        return tuple(dict.fromkeys(ids))

    @field_validator("webhook_urls", mode="before")
    @classmethod
    def _check_webhooks(cls, value: Any) -> tuple[str, ...]:
        urls = _split_list(value)
        for url in urls:
            if not _URL.match(url):
                raise ValueError("bad url")
        return tuple(urls)

    @field_validator("advertise_url")
    @classmethod
    def _check_advertise_url(cls, value: str) -> str:
        value = value.strip()
        if value and not _URL.match(value):
            raise ValueError("bad url")
        return value

    @property
    def advertised_url(self) -> str:
        """Where other replicas and clients reach this one's HTTP server."""
        if self.advertise_url:
            return self.advertise_url
        host = self.bind_host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.bind_port}/"

    @field_validator("nats_url")
    @classmethod
    def _check_nats_url(cls, value: str) -> str:
        for url in _split_list(value):
            if not re.match(r"^(nats|tls)://[^\s/]+$", url):
                raise ValueError("bad url")
        return ",".join(_split_list(value))

    @field_validator("event_topics", mode="before")
    @classmethod
    def _check_event_topics(cls, value: Any) -> tuple[tuple[str, ...], ...]:
        filters = []
        for number, raw_filter in enumerate(_split_list(value, ";"), start=1):
            where = f"filter {number} ({raw_filter!r})"
            segments = [s.strip() for s in raw_filter.split(",")]
            counted = segments[:-1] if segments[-1] == "**" else segments
            if not 1 <= len(counted) <= 4:
                raise ValueError(f"{where} has {len(counted)} segments, at most 4 are allowed")
            if "**" in counted:
                raise ValueError(f"{where} has '**' before its last segment")
            if "" in segments:
                raise ValueError(f"{where} has an empty segment")
            converted = []
            for position, segment in enumerate(segments, start=1):
                try:
                    converted.append(topic_segment_to_xdr(segment))
                except ValueError:
                    raise ValueError(
                        f"{where}, segment {position} ({segment!r}) is neither a symbol name, "
                        "a base64 ScVal nor '*'"
                    ) from None
            filters.append(tuple(converted))
        if len(filters) > 5:
            raise ValueError(f"{len(filters)} topic filters given, at most 5 are allowed")
        return tuple(filters)

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("admin_token", "read_token")
    @classmethod
    def _check_token(cls, value: str) -> str:
        if value and len(value) < 16:
            raise ValueError("token too short")
        return value

    @property
    def bind_host(self) -> str:
        host = self.bind_addr.rsplit(":", 1)[0]
        return host.strip("[]")

    @property
    def bind_port(self) -> int:
        return int(self.bind_addr.rsplit(":", 1)[1])

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the driver SQLAlchemy should use."""
        return sqlalchemy_url(self.database_url)

    @property
    def user_agent(self) -> str:
        return f"stellar-reconciler/{self.service_name}"

    def safe_view(self) -> dict[str, Any]:
        """Settings that are safe to show on /api/status: no secrets, no passwords."""
        return {
            about.shown_as: _SHOW[about.shown](getattr(self, about.name))
            for about in settings_about().values()
            if about.shown is not Shown.NOT
        }


@cache
def settings_about() -> dict[str, About]:
    """Every setting's description, by field name, in the order the fields are declared."""
    described = {}
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra
        if not isinstance(extra, dict) or field.description is None:
            raise TypeError(f"the setting {name} is not declared with setting(...)")
        described[name] = About(
            name=name,
            default=field.default,
            meaning=field.description,
            form=str(extra["form"]),
            shown=Shown(extra["shown"]),
            shown_as=str(extra.get("shown_as", name)),
            readme_default=str(extra.get("readme_default", "")),
            secret=Secret(extra.get("secret", Secret.NONE.value)),
        )
    return described


def expected_form(variable: str) -> str | None:
    """What the setting named `variable` (an environment variable name) should look like."""
    about = settings_about().get(variable.lower())
    return about.form if about else None


def settings_reference(names: tuple[str, ...]) -> str:
    """Help text listing settings (environment variable and its form), for `--help`."""
    width = max(len(name) for name in names)
    lines = ["\b", "Settings (environment variables, or a .env file):"]
    for name in names:
        lines.append(f"  {name.ljust(width)}  {expected_form(name) or 'see the README'}")
    return "\n".join(lines)


def _readme_default(about: About) -> str:
    if about.readme_default:
        return about.readme_default
    if about.default in ("", ()):
        return "empty"
    if isinstance(about.default, bool):
        return f"`{str(about.default).lower()}`"
    if isinstance(about.default, float):
        return f"`{about.default:g}`"
    return f"`{about.default}`"


def settings_table() -> str:
    """The README's table of settings (Markdown), one row per field."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for about in settings_about().values():
        lines.append(f"| `{about.variable}` | {_readme_default(about)} | {about.meaning} |")
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    return [_plain(item) for item in value] if isinstance(value, tuple) else value


_SHOW: dict[Shown, Callable[[Any], Any]] = {
    Shown.PLAIN: _plain,
    Shown.REDACTED_URL: lambda url: redact_url(url) if url else "",
    Shown.DATABASE_KIND: lambda url: sqlalchemy_url(url).split(":", 1)[0].split("+")[0],
    Shown.WHETHER_SET: bool,
    Shown.COUNT: len,
}
