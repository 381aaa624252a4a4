"""running user totals per hour: a users report's edges need no hour rows

Revision ID: 0010_hourly_user_totals
Revises: 0009_rollup_user_totals
Create Date: 2026-11-25

``rollup_user_totals`` held, per (user, kind), the totals through the end of each day the
pair was active; now through the end of each hour it was active (same columns; a bucket is
an hour). Any hour boundary is then a bound the totals answer, so a per-user range whose
edges fall inside a day reads two rows per pair instead of up to half a day of hour rows
per edge. The upgrade rebuilds the totals from the hourly ``users`` rows up to the mark;
the downgrade keeps each pair's last row of each day, moved to the day's start.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010_hourly_user_totals"
down_revision = "0009_rollup_user_totals"
branch_labels = None
depends_on = None

_DAY_US = 86_400_000_000


def upgrade() -> None:
    bind = op.get_bind()
    mark = bind.execute(sa.text("SELECT upto FROM rollup_marks WHERE grain = 'c'")).scalar()
    op.execute("DELETE FROM rollup_user_totals")
    if mark:
        from agentledger.store.sql import _build_user_totals

        raw: Any = bind.connection.driver_connection
        cur = raw.cursor()
        try:
            _build_user_totals(cur, bind.dialect.name, 0, int(mark))
        finally:
            cur.close()


def downgrade() -> None:
    # Each pair's last hour of a day holds its totals through that day: kept, as the day.
    if op.get_bind().dialect.name == "postgresql":
        day = "date_trunc('day', {0} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    else:
        day = f"({{0}} - {{0}} % {_DAY_US})"
    op.execute(
        "DELETE FROM rollup_user_totals WHERE EXISTS (SELECT 1 FROM rollup_user_totals x "
        "WHERE x.user_id = rollup_user_totals.user_id AND x.kind = rollup_user_totals.kind "
        f"AND x.bucket > rollup_user_totals.bucket AND {day.format('x.bucket')} = "
        f"{day.format('rollup_user_totals.bucket')})"
    )
    op.execute(f"UPDATE rollup_user_totals SET bucket = {day.format('bucket')}")
