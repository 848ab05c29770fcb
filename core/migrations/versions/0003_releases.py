"""Releases, config vars, domains, formation.

Revision ID: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.add_column(sa.Column("formation", sa.Text, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("current_release", sa.Integer, nullable=True))
    op.create_table(
        "config_vars",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.UniqueConstraint("app_id", "name", name="uq_config_vars_app_name"),
    )
    op.create_table(
        "domains",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("hostname", sa.String(253), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("build_id", sa.String(32), nullable=False),
        sa.Column("slug_key", sa.String(255), nullable=False),
        sa.Column("processes", sa.Text, nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("formation", sa.Text, nullable=False),
        sa.Column("teresa_yaml", sa.Text, nullable=False),
        sa.Column("reason", sa.String(255), nullable=False),
        sa.Column("user", sa.String(254), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("app_id", "version", name="uq_releases_app_version"),
    )


def downgrade() -> None:
    for table in ("releases", "domains", "config_vars"):
        op.drop_table(table)
    with op.batch_alter_table("apps") as batch:
        batch.drop_column("current_release")
        batch.drop_column("formation")
