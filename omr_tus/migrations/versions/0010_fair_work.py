"""Fair, bounded batch work: batches remember when their sheets were last claimed (they take
turns), count every skipped entry (only the first 1,000 are named), and a batch's pending
sheets are found by an index on (batch_id, status)

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa

from omr_tus.db.models import UTCDateTime

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("claimed_at", UTCDateTime, nullable=True))
        batch.add_column(sa.Column("skipped_count", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_sheets_batch_status", "sheets", ["batch_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_sheets_batch_status", table_name="sheets")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("skipped_count")
        batch.drop_column("claimed_at")
