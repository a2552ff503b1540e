"""Tasks registered from OMRChecker files: the config.json, and the asset files (marker and
reference images, answer_key.csv) their template and evaluation refer to; each answer's place
among its sheet's output columns, so results keep the template's (OMRChecker's) column order

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("config", sa.JSON, nullable=True))
    op.create_table(
        "task_assets",
        sa.Column(
            "task_id", sa.String(8), sa.ForeignKey("tasks.task_id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("content", sa.LargeBinary, nullable=False),
    )
    with op.batch_alter_table("answers") as batch:
        batch.add_column(sa.Column("position", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("answers") as batch:
        batch.drop_column("position")
    op.drop_table("task_assets")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("config")
