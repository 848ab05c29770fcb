"""Dashboard sessions stand on the credential they came from: the SSH key (deleted with it) or the password.

`key_id` refers to the SSH key `dashboard:login` ran with (ON DELETE CASCADE:
`keys:remove` ends the sessions it made); `password_stamp` is a digest of the
password hash a password login matched (a new password ends the session). The
sessions and links that exist stand on nothing yet, so they are deleted: their
users log in again.

Revision ID: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text("DELETE FROM dashboard_sessions"))
    with op.batch_alter_table("dashboard_sessions") as batch:
        batch.add_column(sa.Column("key_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("password_stamp", sa.String(64), nullable=False, server_default=""))
        batch.create_foreign_key("fk_dashboard_sessions_key_id", "ssh_keys", ["key_id"], ["id"], ondelete="CASCADE")
        batch.create_index("ix_dashboard_sessions_key_id", ["key_id"])


def downgrade() -> None:
    with op.batch_alter_table("dashboard_sessions") as batch:
        batch.drop_constraint("fk_dashboard_sessions_key_id", type_="foreignkey")
        batch.drop_index("ix_dashboard_sessions_key_id")
        batch.drop_column("password_stamp")
        batch.drop_column("key_id")
