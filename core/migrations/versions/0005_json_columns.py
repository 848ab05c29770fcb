"""JSON columns: the JSON kept in apps and releases becomes the database's JSON type.

SQLite has no JSON type (SQLAlchemy's JSON stores text there, as before), so
only MySQL/MariaDB and PostgreSQL change.

Revision ID: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = [("apps", "formation", False), ("apps", "limits", False), ("apps", "autoscale", True),
           ("releases", "processes", False), ("releases", "config", False), ("releases", "formation", False)]


def _alter(to_json: bool) -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        return
    for table, column, nullable in COLUMNS:
        kind = sa.JSON() if to_json else sa.Text()
        using = {"postgresql_using": f"{column}::{'json' if to_json else 'text'}"} if dialect == "postgresql" else {}
        if dialect == "postgresql" and table == "apps" and column in ("formation", "limits"):
            op.alter_column(table, column, server_default=None)
        op.alter_column(table, column, type_=kind, existing_nullable=nullable, **using)


def upgrade() -> None:
    _alter(to_json=True)


def downgrade() -> None:
    _alter(to_json=False)
