"""User administration over the API: users can be disabled (disabled_at) and given a storage
quota (quota_bytes, NULL for none)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa

from omr_tus.db.models import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("disabled_at", UTCDateTime, nullable=True))
        batch.add_column(sa.Column("quota_bytes", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("quota_bytes")
        batch.drop_column("disabled_at")
