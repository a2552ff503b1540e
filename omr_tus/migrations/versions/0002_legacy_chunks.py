"""legacy chunked uploads: chunk geometry on uploads, and the chunks received

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("total_chunks", sa.Integer, nullable=True))
        batch.add_column(sa.Column("chunk_size", sa.BigInteger, nullable=True))
    op.create_table(
        "upload_chunks",
        sa.Column(
            "upload_id", sa.String(32), sa.ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("chunk_index", sa.Integer, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("upload_chunks")
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("chunk_size")
        batch.drop_column("total_chunks")
