"""History store: runs, data quality, model metrics, drift, alerts, prediction log.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("stage_seconds", sa.JSON),
        sa.Column("rows", sa.Integer),
        sa.Column("model_version", sa.String(32)),
        sa.Column("data_fingerprint", sa.String(128)),
        sa.Column("source", sa.Text),
        sa.Column("config_ref", sa.Text),
    )
    op.create_index("ix_runs_kind_started", "runs", ["kind", "started_at"])
    op.create_index("ix_runs_model_version", "runs", ["model_version"])

    op.create_table(
        "data_quality",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("column_name", sa.String(255)),
        sa.Column("null_rate", sa.Float),
        sa.Column("duplicate_rate", sa.Float),
        sa.Column("rule_violation_rate", sa.Float),
        sa.Column("expectation_violation_rate", sa.Float),
        sa.Column("score", sa.Float),
    )
    op.create_index("ix_data_quality_run", "data_quality", ["run_id"])

    op.create_table(
        "model_metrics",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("window_start", sa.DateTime),
        sa.Column("window_end", sa.DateTime),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("estimated", sa.Boolean, nullable=False),
        sa.Column("rows", sa.Integer),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_model_metrics_version_window", "model_metrics", ["model_version", "window_start"])

    op.create_table(
        "drift",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64)),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("window_start", sa.DateTime),
        sa.Column("window_end", sa.DateTime),
        sa.Column("feature", sa.String(255), nullable=False),
        sa.Column("psi", sa.Float),
        sa.Column("method", sa.String(64)),
        sa.Column("verdict", sa.String(32)),
        sa.Column("rows", sa.Integer),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_drift_version_window", "drift", ["model_version", "window_start"])

    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64)),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(32)),
        sa.Column("observed", sa.Float),
        sa.Column("threshold", sa.Float),
        sa.Column("window_start", sa.DateTime),
        sa.Column("window_end", sa.DateTime),
        sa.Column("rows", sa.Integer),
        sa.Column("message", sa.Text),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("delivered_at", sa.DateTime),
    )
    op.create_index("ix_alerts_rule_version_created", "alerts", ["rule", "model_version", "created_at"])

    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("row_index", sa.Integer, nullable=False),
        sa.Column("logged_at", sa.DateTime, nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("inputs", sa.JSON),
        sa.Column("probability", sa.Float),
        sa.Column("prediction", sa.String(255)),
        sa.Column("warnings", sa.JSON),
        sa.Column("outcome", sa.String(255)),
        sa.Column("outcome_at", sa.DateTime),
    )
    op.create_index("ix_predictions_logged_at", "predictions", ["logged_at"])
    op.create_index("ix_predictions_version_logged_at", "predictions", ["model_version", "logged_at"])
    op.create_index("ix_predictions_request", "predictions", ["request_id", "row_index"])


def downgrade() -> None:
    for table in ("predictions", "alerts", "drift", "model_metrics", "data_quality", "runs"):
        op.drop_table(table)
