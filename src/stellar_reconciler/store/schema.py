"""The database schema as SQLAlchemy Core tables.

Migrations in `migrations/versions/` create exactly this schema; a test compares the two.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
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

# The network the data came from (one row, written the first time getNetwork answers), so a
# database is never filled from two networks.
network = Table(
    "network",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("passphrase", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("id = 1", name="ck_network_one_row"),
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
    # The first missing ledger of the gap it accepts; it applies to that gap only. NULL on
    # consents from before gaps were named: those are never carried out.
    Column("first_ledger", BigInteger, nullable=True),
    # The last ledger it skipped, once carried out.
    Column("last_ledger", BigInteger, nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("revoked_by", String(64), nullable=True),
    # One live consent per gap: a second is refused, not silently stacked.
    Index(
        "ux_gap_consents_live",
        "stream",
        "first_ledger",
        unique=True,
        sqlite_where=text("consumed_at IS NULL AND revoked_at IS NULL"),
        postgresql_where=text("consumed_at IS NULL AND revoked_at IS NULL"),
    ),
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
    # NATS: published to PREFIX.discrepancies when set (see publisher.py).
    Column("published_at", DateTime(timezone=True), nullable=True),
    Index(
        "ux_discrepancies_open_key",
        "key",
        unique=True,
        sqlite_where=text("resolved_at IS NULL"),
        postgresql_where=text("resolved_at IS NULL"),
    ),
    Index("ix_discrepancies_kind_open", "kind", "resolved_at"),
    Index(
        "ix_discrepancies_unpublished",
        "id",
        sqlite_where=text("published_at IS NULL"),
        postgresql_where=text("published_at IS NULL"),
    ),
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

# A pending expectation can match an event of any age up to its deadline when it is posted
# late; looking such events up by transaction hash needs this index.
Index("ix_events_tx_hash", events.c.tx_hash)

expectations = Table(
    "expectations",
    metadata,
    # Creation order: the first-created pending expectation wins an event (see matching.py).
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("external_id", String(128), nullable=False),
    Column("contract_id", String(56), nullable=False),
    Column("event_name", String(64), nullable=False),
    Column("tx_hash", String(64), nullable=True),
    # Topic values by position ({"1": "G...", ...}), normalised as matching.py compares them.
    Column("topics", JsonType, nullable=False),
    # i128 amounts as decimal text: exact, and wider than any SQL integer type.
    Column("amount", String(48), nullable=True),
    Column("tolerance", String(48), nullable=False),
    Column("deadline_ledger", BigInteger, nullable=False),
    # The relative deadline as given, so re-posting the same record later is recognised.
    Column("deadline_ledgers", Integer, nullable=True),
    # What a batch looks pending expectations up by (matching.match_key).
    Column("match_key", String(200), nullable=False),
    Column("status", String(24), nullable=False),
    Column("event_id", String(32), nullable=True),
    Column("event_ledger", BigInteger, nullable=True),
    # While pending: the closest non-exact event so far (found_amount and difference are its).
    Column("candidate_event_id", String(32), nullable=True),
    # While pending: an exact event exists but others hold all of them (matching.Settlement).
    Column("blocked", Boolean, nullable=False, server_default=false()),
    Column("found_amount", String(48), nullable=True),
    Column("difference", String(48), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("settled_at", DateTime(timezone=True), nullable=True),
    # NATS: this settled state was published to PREFIX.expectations (cleared when it changes).
    Column("published_at", DateTime(timezone=True), nullable=True),
    # Pending, pinned to a transaction, deadline passed without an event: the worker asks
    # getTransaction what happened (store/outcomes.py) before the record settles.
    Column("outcome_due", Boolean, nullable=False, server_default=false()),
    # What getTransaction said: SUCCESS, FAILED or NOT_FOUND, the ledger, the result code.
    Column("tx_status", String(16), nullable=True),
    Column("tx_ledger", BigInteger, nullable=True),
    Column("result_code", String(200), nullable=True),
    Column("cancelled_at", DateTime(timezone=True), nullable=True),
    Column("cancelled_by", String(64), nullable=True),
    # While pending: an event that fits but whose amount cannot be read (a contract upgrade
    # changed the value's shape), and why; the record settles amount_unreadable at its
    # deadline instead of missing_expected (store/shapes.py).
    Column("unreadable_event_id", String(32), nullable=True),
    Column("unreadable_reason", String(400), nullable=True),
    # Settled by a sum of events (partial.py): instalments, or as a member of a group.
    Column("allow_partial", Boolean, nullable=False, server_default=false()),
    Column("group_id", String(128), nullable=True),
    # The sum of the events taken so far (a group's share of it on each member's row).
    Column("settled_amount", String(48), nullable=True),
    Index("ux_expectations_external_id", "external_id", unique=True),
    Index("ix_expectations_group", "group_id"),
    # An event satisfies at most one expectation, whatever the matching code does.
    Index("ux_expectations_event_id", "event_id", unique=True),
    # Pending rows only, and no index on status alone: SQLite would prefer that one to these
    # and scan every pending row per batch; listings by status walk the primary key instead.
    Index(
        "ix_expectations_pending_key",
        "contract_id",
        "event_name",
        "match_key",
        sqlite_where=text("status = 'pending'"),
        postgresql_where=text("status = 'pending'"),
    ),
    # Matched records that may move to another exact event, by key (matching._augment).
    Index(
        "ix_expectations_key_deadline", "contract_id", "event_name", "match_key", "deadline_ledger"
    ),
    Index(
        "ix_expectations_unpublished",
        "id",
        sqlite_where=text("settled_at IS NOT NULL AND published_at IS NULL"),
        postgresql_where=text("settled_at IS NOT NULL AND published_at IS NULL"),
    ),
    Index(
        "ix_expectations_pending_deadline",
        "deadline_ledger",
        sqlite_where=text("status = 'pending'"),
        postgresql_where=text("status = 'pending'"),
    ),
    # Sums partly paid, by deadline: each batch closes those it makes overdue (partial.py).
    Index(
        "ix_expectations_partial_deadline",
        "deadline_ledger",
        sqlite_where=text("status = 'partially_matched'"),
        postgresql_where=text("status = 'partially_matched'"),
    ),
)

# The events a sum settles (partial.py): each claimed once, by a partial record or a group
# (`expectation_id` is the record, or the group's lead member). The events one-event
# records claim are on their rows (expectations.event_id); claiming reads both.
expectation_parts = Table(
    "expectation_parts",
    metadata,
    Column("event_id", String(32), primary_key=True),
    Column("expectation_id", Integer, nullable=False),
    Column("group_id", String(128), nullable=True),
    Column("event_ledger", BigInteger, nullable=False),
    Column("amount", String(48), nullable=False),
    # True for the overshooting event an amount_mismatch settled against.
    Column("overshoot", Boolean, nullable=False, server_default=false()),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    Index("ix_expectation_parts_expectation", "expectation_id"),
    Index("ix_expectation_parts_group", "group_id"),
)

# What the NATS publisher still has to send, in the order it must send it (seq). Written in
# the transaction that stores what it names, deleted once JetStream acknowledged it. Events
# are named by id (the body is read at send time).
publish_outbox = Table(
    "publish_outbox",
    metadata,
    Column(
        "seq",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("kind", String(16), nullable=False),
    Column("ref", String(64), nullable=False),
)

# Periods closed with a proof: the Merkle roots of their events and ledger headers as they
# stood at the close (merkle.py, docs/proofs.md). A later repair inside one is compared with
# these, so history cannot change under a signed-off period without a discrepancy saying so.
closed_periods = Table(
    "closed_periods",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("first_ledger", BigInteger, nullable=False),
    Column("last_ledger", BigInteger, nullable=False),
    Column("events_root", String(64), nullable=False),
    Column("event_count", Integer, nullable=False),
    Column("headers_root", String(64), nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=False),
    Column("closed_by", String(64), nullable=False),
    Index("ux_closed_periods_range", "first_ledger", "last_ledger", unique=True),
    Index("ix_closed_periods_last", "last_ledger"),
)

# The shapes each contract's events have had, per event name (shapes.py): one row per
# distinct shape with the first ledger it was seen in. A new shape after another opens one
# `shape_changed` discrepancy; a re-read of old ledgers finds its shape already here.
event_shapes = Table(
    "event_shapes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("contract_id", String(56), nullable=False),
    Column("name", String(64), nullable=False),
    Column("digest", String(32), nullable=False),
    Column("shape", JsonType, nullable=False),
    Column("first_ledger", BigInteger, nullable=False),
    Column("first_event_id", String(32), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
    Index("ux_event_shapes_digest", "contract_id", "name", "digest", unique=True),
)

# One `reconciler backfill` (or POST /api/backfills): its range, cut into chunks, and how far
# from its first ledger the chunks are known to chain by hash ("verified contiguous through").
backfill_runs = Table(
    "backfill_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("first_ledger", BigInteger, nullable=False),
    Column("last_ledger", BigInteger, nullable=False),
    Column("chunk_ledgers", Integer, nullable=False),
    Column("requested_by", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    # The stitch's mark: every ledger first_ledger..verified_through is stored and chains.
    Column("verified_through", BigInteger, nullable=False),
    Column("missing", JsonType, nullable=False),
)

# One chunk of a run: a job of the queue on PostgreSQL, written in one transaction, and the
# two hashes the stitch compares with its neighbours.
backfill_chunks = Table(
    "backfill_chunks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, nullable=False),
    Column("first_ledger", BigInteger, nullable=False),
    Column("last_ledger", BigInteger, nullable=False),
    # pending, running, done or failed.
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    # host:pid of the worker that last took it.
    Column("worker", String(128), nullable=True),
    # The previous hash of its first ledger and the hash of its last, once written.
    Column("first_previous_hash", String(64), nullable=True),
    Column("last_hash", String(64), nullable=True),
    Column("ledgers_written", Integer, nullable=False),
    Column("events_written", Integer, nullable=False),
    # [["lake"|"rpc", first, last], ...]: where what it wrote came from.
    Column("sources", JsonType, nullable=False),
    Column("error", Text, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ux_backfill_chunks_run", "run_id", "first_ledger", unique=True),
    Index("ix_backfill_chunks_state", "state"),
)
