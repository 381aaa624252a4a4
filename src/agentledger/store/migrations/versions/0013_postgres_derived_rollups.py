"""PostgreSQL: the kinds, bots and tenants rollups are read from the finer ones

Revision ID: 0013_postgres_derived_rollups
Revises: 0012_rollup_fillfactor
Create Date: 2026-12-06

On PostgreSQL ``rollup_kinds`` are sums of ``rollup_what`` rows, and ``rollup_bots`` and
``rollup_tenants`` sums of ``rollup_attribution`` rows: writers stop maintaining them and
readers take the finer rollup instead (``rollups.DERIVED``), which saves the writer a stage
COPY, an ``ON CONFLICT`` merge and a compaction step per rollup. The upgrade empties the
three tables (they stay, so the schema is the same on both databases); the downgrade fills
them again from the finer rollups. Nothing changes on SQLite.
"""

from __future__ import annotations

from alembic import op

revision = "0013_postgres_derived_rollups"
down_revision = "0012_rollup_fillfactor"
branch_labels = None
depends_on = None

SPECS = ("kinds", "bots", "tenants")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"TRUNCATE {', '.join(f'rollup_{spec}' for spec in SPECS)}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        from agentledger.store.rollups import derive_sql

        for spec in SPECS:
            op.execute(f"DELETE FROM rollup_{spec}")
            op.execute(derive_sql(spec))
