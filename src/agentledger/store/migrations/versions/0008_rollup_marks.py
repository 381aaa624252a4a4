"""rollup marks: coarse rollup rows of closed buckets are compacted from finer ones

Revision ID: 0008_rollup_marks
Revises: 0007_rollup_integer_money
Create Date: 2026-11-25

The writer now keeps only the finest grain of the current hour and day; ``rollup_marks``
says how far the coarse rows are complete (see agentledger.store.rollups.Marks). Every grain
is complete in a database written by 0007, so the marks start at the current hour and day
(an empty database starts at 0: its first write compacts whatever it wrote).
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0008_rollup_marks"
down_revision = "0007_rollup_integer_money"
branch_labels = None
depends_on = None

_HOUR_US = 3_600_000_000
_DAY_US = 86_400_000_000
_YEAR_9999_US = 253_370_764_800_000_000  # every bucket closed


def upgrade() -> None:
    table = op.create_table(
        "rollup_marks",
        sa.Column("grain", sa.String(1), primary_key=True),
        sa.Column("upto", sa.BigInteger, nullable=False),
    )
    now = time.time_ns() // 1_000
    if op.get_bind().execute(sa.text("SELECT 1 FROM events LIMIT 1")).first() is None:
        hour = day = 0
    else:
        hour, day = now - now % _HOUR_US, now - now % _DAY_US
    op.bulk_insert(table, [{"grain": "h", "upto": hour}, {"grain": "d", "upto": day}])


def downgrade() -> None:
    # 0007 reads coarse rows as complete: build those of every bucket not compacted yet.
    from agentledger.store.sql import compact_on

    bind = op.get_bind()
    # Every rollup: below 0013 PostgreSQL stores the derived ones too.
    compact_on(bind.connection.driver_connection, bind.dialect.name, _YEAR_9999_US,
               totals=False, skip=frozenset())  # fmt: skip
    op.drop_table("rollup_marks")
