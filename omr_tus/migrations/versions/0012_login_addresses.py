"""Addresses a user has logged in from (login_addresses): guesses made elsewhere never hold
those back (auth.LoginThrottle)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa

from omr_tus.db.models import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_addresses",
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("address", sa.String(255), primary_key=True),
        sa.Column("last_login", UTCDateTime, nullable=False),
    )
    op.create_index("ix_login_addresses_last_login", "login_addresses", ["last_login"])


def downgrade() -> None:
    op.drop_index("ix_login_addresses_last_login", table_name="login_addresses")
    op.drop_table("login_addresses")
