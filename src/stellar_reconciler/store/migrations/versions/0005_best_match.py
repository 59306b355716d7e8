"""Best match: a pending expectation shows its closest candidate event so far.

An amount mismatch is no longer settled when the first mismatching event arrives; the record
waits for its deadline with its best candidate on the row (candidate_event_id, and the
existing found_amount and difference). Matched records can move to another exact event, so
they are looked up by key and deadline too; a pending record whose exact event another holds
is `blocked`, and is tried again whenever that contract's events come.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("expectations") as batch:
        batch.add_column(sa.Column("candidate_event_id", sa.String(32), nullable=True))
        batch.add_column(
            sa.Column("blocked", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.create_index(
        "ix_expectations_key_deadline",
        "expectations",
        ["contract_id", "event_name", "match_key", "deadline_ledger"],
    )


def downgrade() -> None:
    op.drop_index("ix_expectations_key_deadline", table_name="expectations")
    with op.batch_alter_table("expectations") as batch:
        batch.drop_column("blocked")
        batch.drop_column("candidate_event_id")
