"""Per-app resource limits and autoscaling.

Revision ID: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.add_column(sa.Column("limits", sa.Text, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("autoscale", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.drop_column("autoscale")
        batch.drop_column("limits")
