"""rollup by bot, tenant, kind and status (the Prometheus exporter's attribution families)

Revision ID: 0005_rollup_attribution
Revises: 0004_rollup_members
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from agentledger.store.schema import Money, UTCDateTime

revision = "0005_rollup_attribution"
down_revision = "0004_rollup_members"
branch_labels = None
depends_on = None

_COUNTS = (
    "calls", "errors", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens",
)  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "rollup_attribution",
        sa.Column("grain", sa.String(1), primary_key=True),
        sa.Column("bucket", UTCDateTime(), primary_key=True),
        sa.Column("bot_id", sa.String(256), primary_key=True),
        sa.Column("tenant_id", sa.String(256), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("status", sa.String(8), primary_key=True),
        *(sa.Column(m, sa.BigInteger, nullable=False) for m in _COUNTS),
        sa.Column("cost_usd", Money(), nullable=False),
        sa.Column("unpriced_calls", sa.BigInteger, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        *(sa.Column(f"h{i:02d}", sa.BigInteger, nullable=False) for i in range(15)),
    )
    # 0007 refills every rollup from the events (with the head revision's code).


def downgrade() -> None:
    op.drop_table("rollup_attribution")
