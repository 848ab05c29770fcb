"""User ids are never reused: SQLite's users table gets AUTOINCREMENT; domains can wait for approval.

An open SSH connection remembers its user's id. Without AUTOINCREMENT SQLite
hands a deleted user's id (when it was the highest) to the next user created,
and the open connection would act as that new user. MySQL/MariaDB (InnoDB,
10.2.4+) and PostgreSQL never reuse an id, so only SQLite's table is rebuilt
(core.db.upgrade turns foreign keys off around migrations, so rebuilding the
table does not cascade into ssh_keys and team_members).

`domains.verified`: with TERESA_REQUIRE_DOMAIN_VERIFICATION a custom domain
routes only once an admin approved it; domains that exist already are kept
routing.

Revision ID: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("users", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass
    with op.batch_alter_table("domains") as batch:
        batch.add_column(sa.Column("verified", sa.Boolean, nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("domains") as batch:
        batch.drop_column("verified")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("users", recreate="always", table_kwargs={"sqlite_autoincrement": False}):
            pass
