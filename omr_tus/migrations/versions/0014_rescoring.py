"""Rescoring: tasks.key_version counts changes of what scores depend on, sheets.key_version
says under which one a sheet was scored; an index on (task_id, key_version) finds the sheets a
new key leaves to rescore

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("key_version", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("sheets") as batch:
        batch.add_column(sa.Column("key_version", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_sheets_task_key", "sheets", ["task_id", "key_version"])


def downgrade() -> None:
    op.drop_index("ix_sheets_task_key", table_name="sheets")
    with op.batch_alter_table("sheets") as batch:
        batch.drop_column("key_version")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("key_version")
