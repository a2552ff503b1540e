"""Deletion and retention: an audit row per deleted batch or file (deletions), and
batches.file_deleted_at for a batch whose file retention removed while its results stay,
and an index on batches.completed_at, from which retention counts

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from alembic import op
import sqlalchemy as sa

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deletions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("what", sa.String(16), nullable=False),
        sa.Column("batch_id", sa.String(36), nullable=True),
        sa.Column("upload_id", sa.String(32), nullable=False),
        sa.Column("owner_id", sa.Integer, nullable=True),
        sa.Column("deleted_by", sa.Integer, nullable=True),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("filename", sa.String(1024), nullable=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_deletions_deleted_at", "deletions", ["deleted_at"])
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("file_deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_batches_completed_at", "batches", ["completed_at"])  # what retention finds due


def downgrade() -> None:
    op.drop_index("ix_batches_completed_at", table_name="batches")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("file_deleted_at")
    op.drop_index("ix_deletions_deleted_at", table_name="deletions")
    op.drop_table("deletions")
