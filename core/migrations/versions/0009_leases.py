"""Leases: one holder at a time for an app's deploy or a periodic job, across replicas (core/leases.py).

Revision ID: 0009
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

PRECISE = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(190), primary_key=True),
        sa.Column("holder", sa.String(254), nullable=False),
        sa.Column("replica", sa.String(254), nullable=False),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("since", PRECISE, nullable=False),
        sa.Column("expires_at", PRECISE, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
