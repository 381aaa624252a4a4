"""rollup money as integers; no histogram per user; member bitmaps per minute; clustered

Revision ID: 0007_rollup_integer_money
Revises: 0006_rollup_minutes
Create Date: 2026-11-24

A rollup's cost was one decimal column (text on SQLite, summed by a Python aggregate once per
row). It becomes ``cost_nano`` (1e-9 USD) + ``cost_frac`` (1e-21 USD, below one nano) as
integers, which both databases sum exactly in C, plus ``cost_extra`` for the rare cost with
more than 21 decimal places. ``rollup_users`` loses its latency histogram (the widest rollup
per event; percentiles per user read the events). Distinct-user bitmaps gain minute rows. On
SQLite the rollup tables are clustered by their key (WITHOUT ROWID). The tables are
recreated and refilled from the events, in the migration's transaction. A downgrade
recreates the old tables empty: run ``agentledger db rebuild-rollups`` with the older
version to refill them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from agentledger.store.schema import Money, UTCDateTime

revision = "0007_rollup_integer_money"
down_revision = "0006_rollup_minutes"
branch_labels = None
depends_on = None

# Frozen copy of agentledger.store.rollups.SPECS at this revision.
_SPECS = {
    "kinds": ("kind", "status"),
    "bots": ("bot_id", "kind"),
    "tenants": ("tenant_id", "kind"),
    "users": ("user_id", "kind"),
    "what": ("kind", "status", "provider", "model", "name"),
    "attribution": ("bot_id", "tenant_id", "kind", "status"),
}
_LABELS = {"kind": 16, "status": 8, "name": 512}
_COUNTS = (
    "calls", "errors", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens",
)  # fmt: skip


def _create(
    name: str, dims: tuple[str, ...], money: list[sa.Column[object]], histogram: bool = True
) -> None:
    op.create_table(
        f"rollup_{name}",
        sa.Column("grain", sa.String(1), primary_key=True),
        sa.Column("bucket", UTCDateTime(), primary_key=True),
        *(sa.Column(d, sa.String(_LABELS.get(d, 256)), primary_key=True) for d in dims),
        *(sa.Column(m, sa.BigInteger, nullable=False) for m in _COUNTS),
        *money,
        sa.Column("unpriced_calls", sa.BigInteger, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        *(
            sa.Column(f"h{i:02d}", sa.BigInteger, nullable=False)
            for i in range(15 if histogram else 0)
        ),
        sqlite_with_rowid=False,  # clustered by the key: one B-tree, contiguous range scans
    )


def upgrade() -> None:
    for name, dims in _SPECS.items():
        op.drop_table(f"rollup_{name}")
        _create(name, dims, [
            sa.Column("cost_nano", sa.BigInteger, nullable=False),
            sa.Column("cost_frac", sa.BigInteger, nullable=False),
            sa.Column("cost_extra", Money()),
        ], histogram=name != "users")  # fmt: skip
    _create_members(with_rowid=False)
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM events LIMIT 1")).first() is not None:
        from agentledger.store.sql import rebuild_rollups_on

        # Every rollup: below 0013 PostgreSQL stores the derived ones too.
        rebuild_rollups_on(bind.connection.driver_connection, bind.dialect.name, skip=frozenset())


def downgrade() -> None:
    for name, dims in _SPECS.items():
        op.drop_table(f"rollup_{name}")
        _create(name, dims, [sa.Column("cost_usd", Money(), nullable=False)])
    _create_members(with_rowid=True)


def _create_members(*, with_rowid: bool) -> None:
    """Recreate rollup_members empty (the refill writes minute rows too)."""
    op.drop_table("rollup_members")
    op.create_table(
        "rollup_members",
        sa.Column("grain", sa.String(1), primary_key=True),
        sa.Column("bucket", UTCDateTime(), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(512), primary_key=True),
        sa.Column("members", sa.LargeBinary, nullable=False),
        sqlite_with_rowid=with_rowid,
    )
