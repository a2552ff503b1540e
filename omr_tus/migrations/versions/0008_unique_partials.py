"""A partial upload is part of at most one final upload, once (tus concatenation): the index
on upload_parts.partial_id becomes unique, so two finals created at once cannot share a partial

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows that break the rule (a partial repeated, or shared by finals) belong to finals that
    # could never be assembled correctly: each partial keeps its first use only.
    op.execute(
        "DELETE FROM upload_parts WHERE EXISTS (SELECT 1 FROM upload_parts AS first "
        "WHERE first.partial_id = upload_parts.partial_id AND (first.final_id < upload_parts.final_id "
        "OR (first.final_id = upload_parts.final_id AND first.part_index < upload_parts.part_index)))"
    )
    op.drop_index("ix_upload_parts_partial_id", table_name="upload_parts")
    op.create_index("ix_upload_parts_partial_id", "upload_parts", ["partial_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_upload_parts_partial_id", table_name="upload_parts")
    op.create_index("ix_upload_parts_partial_id", "upload_parts", ["partial_id"])
