"""running totals per (user, kind) and day: the users report reads two rows per pair

Revision ID: 0009_rollup_user_totals
Revises: 0008_rollup_marks
Create Date: 2026-11-25

``rollup_user_totals`` holds, per (user, kind), the totals through the end of each day the
pair was active, so the sums over any run of whole days are the difference of two "as of"
rows per pair instead of one row per pair and day. Built from the daily ``users`` rollup
rows by compaction; ``rollup_marks`` grain ``c`` says for which days they are right. The
migration builds them for the days already compacted.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from agentledger.store.schema import Money, UTCDateTime

revision = "0009_rollup_user_totals"
down_revision = "0008_rollup_marks"
branch_labels = None
depends_on = None

_COUNTS = (
    "calls", "errors", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens",
)  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "rollup_user_totals",
        sa.Column("user_id", sa.String(256), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("bucket", UTCDateTime(), primary_key=True),
        *(sa.Column(m, sa.BigInteger, nullable=False) for m in _COUNTS),
        sa.Column("cost_nano", sa.BigInteger, nullable=False),
        sa.Column("cost_frac", sa.BigInteger, nullable=False),
        sa.Column("cost_extra", Money()),
        sa.Column("unpriced_calls", sa.BigInteger, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sqlite_with_rowid=False,
    )
    bind = op.get_bind()
    day = bind.execute(sa.text("SELECT upto FROM rollup_marks WHERE grain = 'd'")).scalar() or 0
    op.execute(sa.text(f"INSERT INTO rollup_marks (grain, upto) VALUES ('c', {int(day)})"))
    if day:
        from agentledger.store.sql import _build_user_totals

        raw: Any = bind.connection.driver_connection
        cur = raw.cursor()
        try:
            _build_user_totals(cur, bind.dialect.name, 0, int(day))
        finally:
            cur.close()


def downgrade() -> None:
    op.execute("DELETE FROM rollup_marks WHERE grain = 'c'")
    op.drop_table("rollup_user_totals")
