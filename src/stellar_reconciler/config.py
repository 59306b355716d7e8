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
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from dotenv import dotenv_values
from pydantic import Field, ValidationError, field_validator
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

# What each setting should look like, for error messages. Keys are environment variable names.
EXPECTED_FORMS: dict[str, str] = {
    "BIND_ADDR": "HOST:PORT, for example 127.0.0.1:3000 or 0.0.0.0:8080",
    "DATABASE_URL": "sqlite:///path/to/file.db or postgresql://user@host:5432/dbname",
    "STELLAR_RPC_URL": "an http:// or https:// URL of a Stellar RPC endpoint",
    "SERVICE_NAME": "a non-empty name of at most 64 characters",
    "POLL_INTERVAL_SECS": "a number of seconds greater than 0 and at most 3600, for example 0.5",
    "RPC_MAX_ATTEMPTS": "a whole number from 1 to 100",
    "RPC_INITIAL_BACKOFF_MS": "a whole number of milliseconds from 1 to 60000",
    "RPC_MAX_BACKOFF_SECS": "a number of seconds greater than 0 and at most 600",
    "RPC_TIMEOUT_SECS": "a number of seconds greater than 0 and at most 600",
    "POLL_FAILURE_MAX_BACKOFF_SECS": "a number of seconds greater than 0 and at most 3600",
    "RPC_FAULT_MAX_BACKOFF_SECS": "a number of seconds greater than 0 and at most 3600",
    "FAILURE_SUMMARY_SECS": "a number of seconds greater than 0 and at most 86400",
    "START_LEDGER": "a ledger number (1 or more), 'oldest' or 'latest'",
    "CONTRACT_IDS": "comma-separated contract strkeys (C..., 56 characters), or empty for all",
    "EVENT_TOPICS": (
        "topic filters separated by ';', each 1-4 comma-separated segments: a symbol name, "
        "a base64 ScVal, '*' (one segment), and optionally a trailing '**', e.g. transfer,*,*"
    ),
    "BATCH_MAX_LEDGERS": "a whole number of ledgers from 1 to 10000",
    "CATCH_UP_PROCESS_LEDGERS": "a whole number of ledgers (0 keeps catch-up in one process)",
    "LOG_LEVEL": "one of debug, info, warning, error",
    "LOG_FORMAT": "json or console (unset: console when stderr is a terminal, else json)",
    "VERIFY_EVERY_LEDGERS": "a whole number of ledgers (0 turns periodic re-verification off)",
    "ADMIN_TOKEN": (
        "a secret of at least 16 characters, or empty to disable state-changing endpoints"
    ),
    "READ_TOKEN": "a secret of at least 16 characters, or empty to leave read endpoints open",
    "WEBHOOK_URLS": "comma-separated http:// or https:// URLs",
    "LAKE_URL": (
        "empty (no lake), or a SEP-54 lake: s3://bucket/prefix, gs://bucket/prefix or "
        "file:///absolute/dir"
    ),
    "LAKE_ENDPOINT_URL": "empty, or the http:// or https:// URL of an S3-compatible endpoint",
    "LAKE_ANONYMOUS": "true to read a public bucket without credentials, false to sign requests",
    "LAKE_PREFETCH": "a whole number of lake objects to fetch ahead, from 1 to 64",
    "BACKFILL_CHUNK_LEDGERS": "a whole number of ledgers per backfill chunk, from 1 to 100000",
    "BACKFILL_STALLED_SECS": (
        "seconds without a heartbeat after which a backfill worker's chunk is retried, 2 to 3600"
    ),
    "UNEXPECTED_EVENT_CONTRACTS": (
        "comma-separated contract strkeys (C...) whose unclaimed events are reported"
    ),
    "NATS_URL": "empty (off), or comma-separated nats:// or tls:// URLs, e.g. nats://127.0.0.1:4222",
    "NATS_STREAM": "a JetStream stream name: 1-64 letters, digits, '_' or '-'",
    "NATS_SUBJECT_PREFIX": "dot-separated tokens of letters, digits, '_' or '-', e.g. stellar",
    "ADVERTISE_URL": (
        "empty (http://BIND_ADDR/), or the http:// or https:// URL other replicas and clients "
        "reach this one at, at most 50 characters"
    ),
    "LEADER_RETRY_SECS": "a number of seconds from 0.1 to 60, for example 1",
    "LEADER_LEASE_SECS": "a whole number of seconds from 2 to 600, for example 10",
}


def sqlalchemy_url(url: str) -> str:
    """A DATABASE_URL with the driver SQLAlchemy should use (postgres:// and postgresql://
    become postgresql+psycopg://); the one place that knows, for the service, bench and tests."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


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


def settings_reference(names: tuple[str, ...]) -> str:
    """Help text listing settings (environment variable and its form), for `--help`."""
    width = max(len(name) for name in names)
    lines = ["\b", "Settings (environment variables, or a .env file):"]
    for name in names:
        lines.append(f"  {name.ljust(width)}  {EXPECTED_FORMS.get(name, 'see the README')}")
    return "\n".join(lines)


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


class Settings(BaseSettings):
    """Every setting of the service; see the README for what each one does."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    bind_addr: str = "127.0.0.1:3000"
    database_url: str = "sqlite:///./reconciler.db"
    stellar_rpc_url: str = TESTNET_RPC_URL
    service_name: str = Field(default="stellar-reconciler", min_length=1, max_length=64)
    poll_interval_secs: float = Field(default=0.5, gt=0, le=3600)
    rpc_max_attempts: int = Field(default=5, ge=1, le=100)
    rpc_initial_backoff_ms: int = Field(default=250, ge=1, le=60000)
    rpc_max_backoff_secs: float = Field(default=5.0, gt=0, le=600)
    rpc_timeout_secs: float = Field(default=30.0, gt=0, le=600)
    # Between failed polls the wait doubles up to one of these caps: transient faults (a dead
    # or overloaded RPC, a database away) and faults a retry inside one call cannot fix
    # (401/403, HTML from a proxy, JSON-RPC -32600/-32601/-32602/-32700).
    poll_failure_max_backoff_secs: float = Field(default=60.0, gt=0, le=3600)
    rpc_fault_max_backoff_secs: float = Field(default=300.0, gt=0, le=3600)
    # While polls keep failing, one "still failing" summary line at most this often.
    failure_summary_secs: float = Field(default=60.0, gt=0, le=86400)
    # getTransaction calls per poll for pinned records whose deadline passed without an
    # event (0: never ask; they settle missing_expected at once, as before).
    tx_outcome_checks_per_poll: int = Field(default=50, ge=0, le=10000)
    start_ledger: str = "oldest"
    contract_ids: Annotated[tuple[str, ...], NoDecode] = ()
    event_topics: Annotated[tuple[tuple[str, ...], ...], NoDecode] = ()
    batch_max_ledgers: int = Field(default=1000, ge=1, le=10000)
    catch_up_process_ledgers: int = Field(default=1000, ge=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # "auto" is the default only: console on a terminal, JSON lines otherwise.
    log_format: Literal["auto", "json", "console"] = "auto"
    verify_every_ledgers: int = Field(default=64, ge=0)
    admin_token: str = ""
    read_token: str = ""
    webhook_urls: Annotated[tuple[str, ...], NoDecode] = ()
    webhook_secret: str = ""
    unexpected_event_contracts: Annotated[tuple[str, ...], NoDecode] = ()
    lake_url: str = ""
    lake_endpoint_url: str = ""
    lake_anonymous: bool = False
    lake_prefetch: int = Field(default=4, ge=1, le=64)
    # A backfill range is cut into chunks of this many ledgers, each one job and one transaction.
    backfill_chunk_ledgers: int = Field(default=10_000, ge=1, le=100_000)
    # A backfill worker silent this long is taken for dead and its chunk is run again.
    backfill_stalled_secs: float = Field(default=30.0, ge=2, le=3600)
    nats_url: str = ""
    nats_stream: str = Field(default="STELLAR_EVENTS", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    nats_subject_prefix: str = Field(
        default="stellar", pattern=r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64})*$"
    )
    # Leader and standbys (PostgreSQL): where this replica is reached, how often a standby
    # tries the lock, and how long a leader that stopped answering keeps it.
    advertise_url: str = Field(default="", max_length=50)
    leader_retry_secs: float = Field(default=1.0, ge=0.1, le=60)
    leader_lease_secs: int = Field(default=10, ge=2, le=600)

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
                variable, shown, EXPECTED_FORMS.get(variable, first["msg"]), reason
            ) from None
        if settings.webhook_urls and len(settings.webhook_secret) < 16:
            raise ConfigError(
                "WEBHOOK_SECRET",
                "***" if settings.webhook_secret else "",
                "a secret of at least 16 characters whenever WEBHOOK_URLS is set (webhooks are "
                "signed with it)",
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
            "service_name": self.service_name,
            "bind_addr": self.bind_addr,
            "database": self.sqlalchemy_url.split(":", 1)[0].split("+")[0],
            "stellar_rpc_url": redact_url(self.stellar_rpc_url),
            "poll_interval_secs": self.poll_interval_secs,
            "rpc_max_attempts": self.rpc_max_attempts,
            "rpc_initial_backoff_ms": self.rpc_initial_backoff_ms,
            "rpc_max_backoff_secs": self.rpc_max_backoff_secs,
            "rpc_timeout_secs": self.rpc_timeout_secs,
            "poll_failure_max_backoff_secs": self.poll_failure_max_backoff_secs,
            "rpc_fault_max_backoff_secs": self.rpc_fault_max_backoff_secs,
            "failure_summary_secs": self.failure_summary_secs,
            "tx_outcome_checks_per_poll": self.tx_outcome_checks_per_poll,
            "start_ledger": self.start_ledger,
            "contract_ids": list(self.contract_ids),
            "event_topics": [list(f) for f in self.event_topics],
            "batch_max_ledgers": self.batch_max_ledgers,
            "backfill_chunk_ledgers": self.backfill_chunk_ledgers,
            "catch_up_process_ledgers": self.catch_up_process_ledgers,
            "verify_every_ledgers": self.verify_every_ledgers,
            "admin_enabled": bool(self.admin_token),
            "read_token_required": bool(self.read_token),
            "webhooks": len(self.webhook_urls),
            "nats_url": redact_url(self.nats_url) if self.nats_url else "",
            "nats_stream": self.nats_stream,
            "nats_subject_prefix": self.nats_subject_prefix,
            "advertise_url": self.advertised_url,
            "leader_retry_secs": self.leader_retry_secs,
            "leader_lease_secs": self.leader_lease_secs,
        }
