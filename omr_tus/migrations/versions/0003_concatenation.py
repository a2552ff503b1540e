"""tus concatenation: partial/final flag on uploads, and the parts of each final upload

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("concat", sa.String(8), nullable=True))
    op.create_table(
        "upload_parts",
        sa.Column(
            "final_id", sa.String(32), sa.ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("part_index", sa.Integer, primary_key=True),
        sa.Column(
            "partial_id", sa.String(32), sa.ForeignKey("uploads.id", ondelete="CASCADE"), nullable=False
        ),
    )
    op.create_index("ix_upload_parts_partial_id", "upload_parts", ["partial_id"])


def downgrade() -> None:
    op.drop_table("upload_parts")
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("concat")
