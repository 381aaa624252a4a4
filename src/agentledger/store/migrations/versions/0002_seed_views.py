"""seed-compatible views: metrics (seed 004), llm_usage and task_metrics (seed 001)

Revision ID: 0002_seed_views
Revises: 0001_events
Create Date: 2026-11-24

The seeds' own SQL runs unchanged against these views. On SQLite, ``timestamp`` is text in
SQLite's ``datetime()`` format so the seeds' ``date('now', ...)`` comparisons work; money is
exposed as a float, as the seeds' ``REAL``/``FLOAT`` columns were (the exact figure stays in
``events.cost_usd``).
"""

from __future__ import annotations

from alembic import op

revision = "0002_seed_views"
down_revision = "0001_events"
branch_labels = None
depends_on = None

_VIEWS = ("metrics", "llm_usage", "task_metrics")


def _sql(dialect: str) -> dict[str, str]:
    if dialect == "postgresql":
        ts = "started_at"
        ok = "(status = 'ok')"
        cost = "CAST(cost_usd AS DOUBLE PRECISION)"
        meta = "CAST(metadata AS TEXT)"
    else:
        ts = "strftime('%Y-%m-%d %H:%M:%f', started_at / 1000000.0, 'unixepoch')"
        ok = "CASE WHEN status = 'ok' THEN 1 ELSE 0 END"
        cost = "CAST(cost_usd AS REAL)"
        meta = "metadata"
    event_type = (
        "CASE kind WHEN 'tool' THEN 'mcp' WHEN 'command' THEN 'command' "
        "WHEN 'llm' THEN 'llm' WHEN 'error' THEN 'error' ELSE kind END"
    )
    metric = (
        "SELECT event_id || '#{name}' AS id, task_id, '{name}' AS metric_name, "
        "CAST({value} AS {real}) AS metric_value, {ts} AS timestamp "
        "FROM events WHERE task_id IS NOT NULL{extra}"
    )
    real = "DOUBLE PRECISION" if dialect == "postgresql" else "REAL"
    return {
        "metrics": f"""
            SELECT event_id AS id, {ts} AS timestamp, {event_type} AS event_type,
                   COALESCE(user_id, '') AS username, tenant_id AS guild_id,
                   CASE WHEN kind = 'llm' THEN COALESCE(model, name) ELSE name END AS name,
                   {ok} AS success, error_message,
                   CAST(ROUND(duration_ms) AS INTEGER) AS response_time_ms,
                   input_tokens + output_tokens AS tokens,
                   {cost} AS estimated_cost_usd, {meta} AS metadata, parent_id,
                   {ts} AS created_at, bot_id, task_id, provider, cost_source
            FROM events""",
        "llm_usage": f"""
            SELECT event_id AS id, task_id, user_id, model,
                   input_tokens AS prompt_tokens, output_tokens AS completion_tokens,
                   input_tokens + output_tokens AS total_tokens,
                   {cost} AS cost_usd, duration_ms AS latency_ms,
                   CASE WHEN status = 'ok' THEN 'success' ELSE 'error' END AS status,
                   error_message, {ts} AS timestamp, bot_id, tenant_id
            FROM events WHERE kind = 'llm'""",
        "task_metrics": " UNION ALL ".join(
            metric.format(name=name, value=value, real=real, ts=ts, extra=extra)
            for name, value, extra in (
                ("cost_usd", "cost_usd", " AND cost_usd IS NOT NULL"),
                ("total_tokens", "input_tokens + output_tokens", " AND kind = 'llm'"),
                ("latency_ms", "duration_ms", ""),
                ("error", "CASE WHEN status = 'error' THEN 1 ELSE 0 END", ""),
            )
        ),
    }


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name, body in _sql(dialect).items():
        op.execute(f"CREATE VIEW {name} AS {body}")


def downgrade() -> None:
    for name in _VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
