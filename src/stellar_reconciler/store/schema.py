"""The database schema as SQLAlchemy Core tables.

Migrations in `migrations/versions/` create exactly this schema; a test compares the two.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

# JSONB on PostgreSQL (indexable, compact); JSON text on SQLite.
JsonType = JSON().with_variant(JSONB(), "postgresql")

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("stream", String(64), primary_key=True),
    # Last ledger fully committed; the next batch must start at ledger + 1.
    Column("ledger", BigInteger, nullable=False),
    # What the stream indexes (contract ids and topic filters), so a changed filter is noticed.
    Column("filter_fingerprint", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

ledgers = Table(
    "ledgers",
    metadata,
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
    Column("previous_hash", String(64), nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=False),
    Column("event_count", Integer, nullable=False),
)

events = Table(
    "events",
    metadata,
    # The RPC's event id ("%019d-%010d"): unique, and its text order is ledger order.
    Column("id", String(32), primary_key=True),
    Column("ledger", BigInteger, nullable=False),
    Column("ledger_closed_at", DateTime(timezone=True), nullable=False),
    Column("contract_id", String(56), nullable=False),
    Column("type", String(16), nullable=False),
    Column("name", String(64), nullable=True),
    Column("tx_hash", String(64), nullable=False),
    Column("transaction_index", Integer, nullable=False),
    Column("operation_index", Integer, nullable=False),
    Column("in_successful_contract_call", Boolean, nullable=False),
    Column("topics_xdr", JsonType, nullable=False),
    Column("value_xdr", Text, nullable=False),
    Column("topics", JsonType, nullable=False),
    Column("value", JsonType, nullable=True),
    Index("ix_events_ledger", "ledger"),
    Index("ix_events_contract_id", "contract_id", "id"),
    Index("ix_events_name", "name", "id"),
)

acknowledged_gaps = Table(
    "acknowledged_gaps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("stream", String(64), nullable=False),
    Column("first_ledger", BigInteger, nullable=False),
    Column("last_ledger", BigInteger, nullable=False),
    Column("acknowledged_at", DateTime(timezone=True), nullable=False),
    Column("note", Text, nullable=False),
)

# An operator's consent to skip ledgers the RPC no longer keeps; the worker carries it out
# when it next meets the gap, so the exact range is known only then (the window slides).
gap_consents = Table(
    "gap_consents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("stream", String(64), nullable=False),
    # NULL: whatever the retention window has lost when the worker resumes.
    Column("through_ledger", BigInteger, nullable=True),
    Column("note", Text, nullable=False),
    Column("requested_by", String(64), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("consumed_at", DateTime(timezone=True), nullable=True),
)

discrepancies = Table(
    "discrepancies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    # Identifies "the same problem" so a check that runs again does not open it twice.
    Column("key", String(200), nullable=False),
    Column("first_ledger", BigInteger, nullable=True),
    Column("last_ledger", BigInteger, nullable=True),
    Column("subject", String(128), nullable=True),
    Column("message", Text, nullable=False),
    Column("expected", JsonType, nullable=True),
    Column("found", JsonType, nullable=True),
    Column("detected_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("resolved_by", String(64), nullable=True),
    Column("resolution", Text, nullable=True),
    # Webhook outbox: delivered when notified_at is set.
    Column("notified_at", DateTime(timezone=True), nullable=True),
    Column("notify_attempts", Integer, nullable=False, server_default="0"),
    Index(
        "ux_discrepancies_open_key",
        "key",
        unique=True,
        sqlite_where=text("resolved_at IS NULL"),
        postgresql_where=text("resolved_at IS NULL"),
    ),
    Index("ix_discrepancies_kind_open", "kind", "resolved_at"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(200), nullable=True),
    Column("detail", JsonType, nullable=True),
    Column("remote_addr", String(64), nullable=True),
)
