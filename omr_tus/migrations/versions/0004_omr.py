"""OMR: tasks (templates and answer keys), sheets with worker leases, answers; batch ingest state

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from alembic import op
import sqlalchemy as sa

from omr_tus.db.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("skipped", sa.JSON, nullable=True))
        batch.add_column(sa.Column("error", sa.String(1024), nullable=True))
        batch.add_column(sa.Column("lease_owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_expires", UTCDateTime, nullable=True))
    op.create_table(
        "tasks",
        sa.Column("task_id", sa.String(8), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("template", sa.JSON, nullable=False),
        sa.Column("answer_key", sa.JSON, nullable=True),
        sa.Column("created_by", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "sheets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(36), sa.ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
        sa.Column("source", sa.String(1024), nullable=False),
        sa.Column("page", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("task_id", sa.String(8), nullable=True),
        sa.Column("student_id", sa.String(32), nullable=True),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("error", sa.String(1024), nullable=True),
        sa.Column("alignment_error", sa.Float, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires", UTCDateTime, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("processed_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("batch_id", "source", "page"),
    )
    op.create_index("ix_sheets_batch_id", "sheets", ["batch_id"])
    op.create_index("ix_sheets_status", "sheets", ["status"])
    op.create_index("ix_sheets_task_id", "sheets", ["task_id"])
    op.create_index("ix_sheets_student_id", "sheets", ["student_id"])
    op.create_table(
        "answers",
        sa.Column("sheet_id", sa.Integer, sa.ForeignKey("sheets.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("column", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("flags", sa.String(64), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("answers")
    op.drop_table("sheets")
    op.drop_table("tasks")
    with op.batch_alter_table("batches") as batch:
        for column in ("lease_expires", "lease_owner", "error", "skipped"):
            batch.drop_column(column)
