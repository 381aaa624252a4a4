"""distinct users per hour/day and (kind, name), as bitmaps over user numbers

Revision ID: 0004_rollup_members
Revises: 0003_rollups
Create Date: 2026-11-24

0005 fills every rollup from the events already stored.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from agentledger.store.schema import UTCDateTime

revision = "0004_rollup_members"
down_revision = "0003_rollups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_numbers",
        sa.Column(
            "n",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("user_id", sa.String(256), nullable=False, unique=True),
    )
    op.create_table(
        "rollup_members",
        sa.Column("grain", sa.String(1), primary_key=True),
        sa.Column("bucket", UTCDateTime(), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(512), primary_key=True),
        sa.Column("members", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rollup_members")
    op.drop_table("user_numbers")
