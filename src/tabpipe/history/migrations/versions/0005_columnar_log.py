"""The columnar prediction log: an index of its Parquet files (``log_files``) and the outcomes attached
to its rows (``log_outcomes``, joined at read time on ``row_id``).

Rows logged before this revision stay in ``predictions`` and are read together with the Parquet files
(nothing is copied); with ``monitoring.log.format: sql`` new rows keep going there too.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_files",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("path", sa.Text, nullable=False),                 # absolute path of the file
        sa.Column("hour", sa.DateTime, nullable=False),             # the partition: logged_at floored to the hour
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("first_logged_at", sa.DateTime, nullable=False),
        sa.Column("last_logged_at", sa.DateTime, nullable=False),
        sa.Column("written_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_log_files_version_hour", "log_files", ["model_version", "hour"])
    op.create_index("ix_log_files_hour", "log_files", ["hour"])
    op.create_table(
        "log_outcomes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("row_id", sa.String(255), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("hour", sa.DateTime, nullable=False),             # the hour partition of the labelled log rows
        sa.Column("rows", sa.Integer, nullable=False),              # log rows of that hour carrying row_id
        sa.Column("outcome", sa.String(255), nullable=False),
        sa.Column("outcome_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_log_outcomes_hour", "log_outcomes", ["hour", "model_version"])
    op.create_index("ix_log_outcomes_row", "log_outcomes", ["row_id", "model_version", "hour"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_log_outcomes_row", "log_outcomes")
    op.drop_index("ix_log_outcomes_hour", "log_outcomes")
    op.drop_table("log_outcomes")
    op.drop_index("ix_log_files_hour", "log_files")
    op.drop_index("ix_log_files_version_hour", "log_files")
    op.drop_table("log_files")
