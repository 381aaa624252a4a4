"""per-minute rows for the kinds and what rollups (grain 'm'): range edges read minutes

Revision ID: 0006_rollup_minutes
Revises: 0005_rollup_attribution
Create Date: 2026-11-24

No table changes: rollup rows gain the grain ``m`` (0007 fills them, and every rollup, from the
events already stored).
"""

from __future__ import annotations

from alembic import op

revision = "0006_rollup_minutes"
down_revision = "0005_rollup_attribution"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # 0007 refills every rollup from the events (with the head revision's code)


def downgrade() -> None:
    op.execute("DELETE FROM rollup_kinds WHERE grain = 'm'")
    op.execute("DELETE FROM rollup_what WHERE grain = 'm'")
