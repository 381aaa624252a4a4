"""events table

Revision ID: 0001_events
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from agentledger.store.schema import Money, UTCDateTime

revision = "0001_events"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    json_doc = sa.JSON().with_variant(JSONB(), "postgresql")
    label = sa.String(256)
    op.create_table(
        "events",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("trace_id", sa.String(64), nullable=False),
        sa.Column("span_id", sa.String(64), nullable=False),
        sa.Column("parent_id", sa.String(64)),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("provider", label),
        sa.Column("model", label),
        sa.Column("bot_id", label),
        sa.Column("user_id", label),
        sa.Column("task_id", label),
        sa.Column("tenant_id", label),
        sa.Column("session_id", label),
        sa.Column("tags", json_doc),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger, nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger, nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", Money()),
        sa.Column("cost_source", sa.String(16), nullable=False),
        sa.Column("price_version", sa.String(64)),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("error_type", label),
        sa.Column("error_message", sa.Text),
        sa.Column("metadata", json_doc),
    )
    op.create_index("ix_events_started_at", "events", ["started_at"])
    op.create_index("ix_events_bot_time", "events", ["bot_id", "started_at"])
    op.create_index("ix_events_user_time", "events", ["user_id", "started_at"])
    op.create_index("ix_events_task_time", "events", ["task_id", "started_at"])
    op.create_index("ix_events_tenant_time", "events", ["tenant_id", "started_at"])
    op.create_index("ix_events_trace", "events", ["trace_id"])


def downgrade() -> None:
    op.drop_table("events")
