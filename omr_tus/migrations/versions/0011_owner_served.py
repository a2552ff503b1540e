"""Users remember when a worker last claimed sheets of theirs, so batches take turns by owner
even when the batches that served them are no longer waiting (a small batch is claimed whole);
filled from the batches' claimed_at

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa

from omr_tus.db.models import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("last_served_at", UTCDateTime, nullable=True))
    op.execute(
        "UPDATE users SET last_served_at = (SELECT max(batches.claimed_at) FROM batches "
        "WHERE batches.owner_id = users.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("last_served_at")
