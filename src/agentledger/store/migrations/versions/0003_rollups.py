"""rollup tables: per-hour and per-day totals kept with the events

Revision ID: 0003_rollups
Revises: 0002_seed_views
Create Date: 2026-11-24

Creates the rollup tables; 0007 fills them (and the later ones) from the events already
stored, in the migration's transaction, so an upgraded database answers from rollups at once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from agentledger.store.schema import Money, UTCDateTime

revision = "0003_rollups"
down_revision = "0002_seed_views"
branch_labels = None
depends_on = None

# Frozen copy of agentledger.store.rollups.SPECS at this revision.
_SPECS = {
    "kinds": ("kind", "status"),
    "bots": ("bot_id", "kind"),
    "tenants": ("tenant_id", "kind"),
    "users": ("user_id", "kind"),
    "what": ("kind", "status", "provider", "model", "name"),
}
_LABELS = {"kind": 16, "status": 8, "name": 512}
_COUNTS = (
    "calls", "errors", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens",
)  # fmt: skip


def upgrade() -> None:
    for name, dims in _SPECS.items():
        op.create_table(
            f"rollup_{name}",
            sa.Column("grain", sa.String(1), primary_key=True),
            sa.Column("bucket", UTCDateTime(), primary_key=True),
            *(sa.Column(d, sa.String(_LABELS.get(d, 256)), primary_key=True) for d in dims),
            *(sa.Column(m, sa.BigInteger, nullable=False) for m in _COUNTS),
            sa.Column("cost_usd", Money(), nullable=False),
            sa.Column("unpriced_calls", sa.BigInteger, nullable=False),
            sa.Column("duration_ms", sa.Float, nullable=False),
            *(sa.Column(f"h{i:02d}", sa.BigInteger, nullable=False) for i in range(15)),
        )


def downgrade() -> None:
    for name in _SPECS:
        op.drop_table(f"rollup_{name}")
