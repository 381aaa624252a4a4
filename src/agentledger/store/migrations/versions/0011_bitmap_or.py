"""PostgreSQL: agentledger_bitmap_or, so a writer ORs member bitmaps in one upsert

Revision ID: 0011_bitmap_or
Revises: 0010_hourly_user_totals
Create Date: 2026-12-03

A writer added a batch's distinct users to ``rollup_members`` in three statements on
PostgreSQL (insert the missing rows, lock them all, update them with the bits ORed in
Python). ``agentledger_bitmap_or(a, b)`` ORs two little-endian bitmaps of any lengths in
SQL, so one ``INSERT .. ON CONFLICT DO UPDATE SET members = agentledger_bitmap_or(..)``
does it: the conflicting row is locked and re-read before the update, so concurrent writers'
bits add up. Nothing changes on SQLite (one writer at a time there). Rebuilding the
rollups (which older migrations do) creates the function too, with the same text.
"""

from __future__ import annotations

from alembic import op

revision = "0011_bitmap_or"
down_revision = "0010_hourly_user_totals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        from agentledger.store.sql import BITMAP_OR_SQL

        op.execute(BITMAP_OR_SQL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS agentledger_bitmap_or(bytea, bytea)")
