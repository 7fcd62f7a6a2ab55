"""Uploaded training rows (``POST /data``): one row per accepted record, in upload order.

``id`` orders the rows and is what a training run records as "uploaded rows up to id N" (lineage).

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "training_rows",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("upload_id", sa.String(64), nullable=False),
        sa.Column("row_index", sa.Integer, nullable=False),
        sa.Column("uploaded_at", sa.DateTime, nullable=False),
        sa.Column("record", sa.JSON, nullable=False),
    )
    op.create_index("ix_training_rows_upload", "training_rows", ["upload_id"])


def downgrade() -> None:
    op.drop_index("ix_training_rows_upload", "training_rows")
    op.drop_table("training_rows")
