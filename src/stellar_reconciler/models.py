"""Plain data the layers hand to each other: frozen dataclasses and NamedTuples, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple, overload

# A JSON value as decoded from an ScVal: str, int, bool, None, list or dict.
Json = Any


def utc_from_unix(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands datetimes back without a zone; everything we store is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@overload
def iso_utc(value: datetime) -> str: ...
@overload
def iso_utc(value: None) -> None: ...
@overload
def iso_utc(value: datetime | None) -> str | None: ...
def iso_utc(value: datetime | None) -> str | None:
    """A time as every answer of the service shows it: ISO 8601 in UTC, ending in Z."""
    return None if value is None else as_utc(value).isoformat().replace("+00:00", "Z")


def iso_from_unix(seconds: int) -> str:
    """A ledger's close time as getEvents shows ledgerClosedAt, and the service every time."""
    return iso_utc(utc_from_unix(seconds))


@dataclass(frozen=True, slots=True)
class NetworkTip:
    """What the RPC node holds right now: its newest and oldest ledgers."""

    latest_ledger: int
    oldest_ledger: int
    latest_close_time: int | None = None
    oldest_close_time: int | None = None
    retention_window: int | None = None


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    passphrase: str
    protocol_version: int


@dataclass(frozen=True, slots=True)
class LedgerHeader:
    """One ledger as `getLedgers` describes it, hash verified against its header XDR."""

    sequence: int
    hash: str
    previous_hash: str
    close_time: int
    protocol_version: int
    # Size of metadataXdr as served (base64 characters); kept to measure what meta costs.
    meta_size: int = 0


# The two event types are NamedTuples, not frozen dataclasses: a catch-up builds millions of
# them, a NamedTuple is built ~6x faster (a frozen dataclass sets each field through
# object.__setattr__), and a tuple of atoms is not tracked by the garbage collector.
class RawEvent(NamedTuple):
    """A contract event exactly as `getEvents` serves it (topics and value still base64 XDR)."""

    id: str
    type: str
    ledger: int
    ledger_closed_at: str
    contract_id: str
    tx_hash: str
    transaction_index: int
    operation_index: int
    in_successful_contract_call: bool
    topics_xdr: tuple[str, ...]
    value_xdr: str


class Event(NamedTuple):
    """A contract event with its topics and value decoded to JSON."""

    id: str
    type: str
    ledger: int
    ledger_closed_at: datetime
    contract_id: str
    tx_hash: str
    transaction_index: int
    operation_index: int
    in_successful_contract_call: bool
    topics_xdr: tuple[str, ...]
    value_xdr: str
    topics: tuple[Json, ...]
    value: Json
    # The first topic when it is a symbol or string: how Soroban contracts name their events.
    name: str | None


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """A processed ledger as the store keeps it: one row per ledger, with or without events."""

    sequence: int
    hash: str
    previous_hash: str
    closed_at: datetime
    event_count: int


@dataclass(frozen=True, slots=True)
class Batch:
    """A contiguous run of ledgers and all their events, committed in one transaction."""

    first_ledger: int
    last_ledger: int
    ledgers: tuple[LedgerRecord, ...]
    events: tuple[Event, ...]

    def __post_init__(self) -> None:
        expected = list(range(self.first_ledger, self.last_ledger + 1))
        if [ledger.sequence for ledger in self.ledgers] != expected:
            span = f"{self.first_ledger}-{self.last_ledger}"
            raise ValueError(f"batch {span} must hold every ledger once, in order")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    stream: str
    ledger: int | None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AcknowledgedGap:
    """A range of ledgers the operator accepted as lost (outside the RPC's retention window)."""

    first_ledger: int
    last_ledger: int
    acknowledged_at: datetime
    note: str = ""


class BlockKind(StrEnum):
    """Why the worker stopped advancing; health shows it as `detail.kind`."""

    # The ledger after the checkpoint is older than the RPC keeps; waits for a consent.
    RETENTION_GAP = "retention_gap"
    # A fault that retrying cannot fix; waits for an operator's restart.
    HALTED = "halted"
