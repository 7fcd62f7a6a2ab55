"""Runs: which monitoring run started a run (``trigger_run_id``), so a retrained version's lineage
names the window and the alerts that led to it. NULL for every run started otherwise (and every run
recorded before this revision).

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("trigger_run_id", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("trigger_run_id")
