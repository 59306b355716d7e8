"""Transaction outcomes and the record lifecycle.

A pending record pinned to a transaction hash that reaches its deadline with no event is
`outcome_due`: the worker asks getTransaction, then settles it `failed_on_chain` (with the
result code), `not_found` or `missing_expected`, keeping what the node said (tx_status,
tx_ledger, result_code). A record can be cancelled (who and when are kept on the row).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("expectations") as batch:
        batch.add_column(
            sa.Column("outcome_due", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("tx_status", sa.String(16), nullable=True))
        batch.add_column(sa.Column("tx_ledger", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("result_code", sa.String(200), nullable=True))
        batch.add_column(sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("cancelled_by", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("expectations") as batch:
        for name in (
            "cancelled_by",
            "cancelled_at",
            "result_code",
            "tx_ledger",
            "tx_status",
            "outcome_due",
        ):
            batch.drop_column(name)
