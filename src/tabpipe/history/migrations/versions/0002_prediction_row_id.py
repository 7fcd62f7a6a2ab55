"""Prediction log: a client row id (``row_id``) to join arriving outcomes on, indexed.

Rows logged before this revision get ``row_id = request_id:row_index`` (the documented fallback id).

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("row_id", sa.String(255)))
    predictions = sa.table("predictions", sa.column("row_id"), sa.column("request_id"), sa.column("row_index"))
    fallback = predictions.c.request_id + ":" + sa.cast(predictions.c.row_index, sa.String)
    op.execute(predictions.update().where(predictions.c.row_id.is_(None)).values(row_id=fallback))
    op.create_index("ix_predictions_row_id", "predictions", ["row_id"])


def downgrade() -> None:
    op.drop_index("ix_predictions_row_id", "predictions")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("row_id")
