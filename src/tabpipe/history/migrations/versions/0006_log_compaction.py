"""Compaction of the columnar prediction log: the files a compaction replaced (``log_files_retired``), kept
on disk until no reader can still be reading them, then deleted.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_files_retired",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("path", sa.Text, nullable=False),                 # absolute path of the replaced file
        sa.Column("retired_at", sa.DateTime, nullable=False),       # when the index stopped naming it
    )
    op.create_index("ix_log_files_retired_at", "log_files_retired", ["retired_at"])


def downgrade() -> None:
    op.drop_index("ix_log_files_retired_at", "log_files_retired")
    op.drop_table("log_files_retired")
