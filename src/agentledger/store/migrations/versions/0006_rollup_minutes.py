"""per-minute rows for the kinds and what rollups (grain 'm'): range edges read minutes

Revision ID: 0006_rollup_minutes
Revises: 0005_rollup_attribution
Create Date: 2026-11-24

No table changes: rollup rows gain the grain ``m``. Fills them (and every rollup) from the
events already stored, in the migration's transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_rollup_minutes"
down_revision = "0005_rollup_attribution"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM events LIMIT 1")).first() is not None:
        from agentledger.store.sql import rebuild_rollups_on

        rebuild_rollups_on(bind.connection.driver_connection, bind.dialect.name)


def downgrade() -> None:
    op.execute("DELETE FROM rollup_kinds WHERE grain = 'm'")
    op.execute("DELETE FROM rollup_what WHERE grain = 'm'")
