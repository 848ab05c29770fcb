"""Dump and restore round trips on SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

import gzip
import io
import json
from datetime import datetime

import pytest
import sqlalchemy as sa

from core.backup import BackupError, dump, restore

metadata = sa.MetaData()
users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(200), nullable=False, unique=True),
    sa.Column("is_admin", sa.Boolean, nullable=False),
    sa.Column("password_hash", sa.LargeBinary, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
)
ssh_keys = sa.Table(
    "ssh_keys", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.ForeignKey("users.id"), nullable=False),
    sa.Column("fingerprint", sa.String(100), nullable=False),
    sa.Column("public_key", sa.Text, nullable=False),
)
apps = sa.Table(
    "apps", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("owner_id", sa.ForeignKey("users.id"), nullable=False),
)
releases = sa.Table(
    "releases", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("app_id", sa.ForeignKey("apps.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)
config_vars = sa.Table(
    "config_vars", metadata,
    sa.Column("app_id", sa.ForeignKey("apps.id"), primary_key=True),
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

WHEN = datetime(2026, 2, 28, 23, 59, 58, 123456)
ROWS = {
    "users": [
        {"id": 1, "email": "ada@example.com", "is_admin": True, "password_hash": b"$2b$12\x00\xff binary", "created_at": WHEN},
        {"id": 7, "email": "bob@example.com", "is_admin": False, "password_hash": None, "created_at": datetime(2020, 1, 1)},
    ],
    "ssh_keys": [{"id": 3, "user_id": 7, "fingerprint": "SHA256:abc", "public_key": "ssh-ed25519 AAAA bob"}],
    "apps": [{"id": 2, "name": "myapp", "owner_id": 1}],
    "releases": [
        {"id": 10, "app_id": 2, "version": 1, "reason": "push by ada ✓", "created_at": WHEN},
        {"id": 11, "app_id": 2, "version": 2, "reason": "config:set DATABASE_URL", "created_at": WHEN},
    ],
    "config_vars": [
        {"app_id": 2, "key": "DATABASE_URL", "value": "postgres://u:p@h/db"},
        {"app_id": 2, "key": "MULTILINE", "value": "line one\nline \"two\"\t\u00e9"},
    ],
}


@pytest.fixture
def engine(database_url: str):
    engine = sa.create_engine(database_url)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def fill(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            conn.execute(table.insert(), ROWS[table.name])


def contents(engine: sa.Engine) -> dict[str, list[dict]]:
    with engine.connect() as conn:
        return {
            table.name: [dict(row._mapping) for row in conn.execute(sa.select(table).order_by(*table.primary_key))]
            for table in metadata.sorted_tables
        }


def wipe(engine: sa.Engine) -> None:
    metadata.drop_all(engine)
    metadata.create_all(engine)


def dumped(engine: sa.Engine) -> io.BytesIO:
    out = io.BytesIO()
    dump(engine, metadata, out)
    out.seek(0)
    return out


def test_backup_wipe_restore_round_trips_every_row_and_type(engine: sa.Engine) -> None:
    fill(engine)
    before = contents(engine)
    assert before["users"][0]["password_hash"] == b"$2b$12\x00\xff binary"
    backup = dumped(engine)
    wipe(engine)

    counts = restore(engine, metadata, backup)

    assert counts == {name: len(rows) for name, rows in ROWS.items()}
    after = contents(engine)
    assert after == before
    assert after["users"][0]["is_admin"] is True and after["users"][1]["is_admin"] is False
    assert isinstance(after["releases"][0]["created_at"], datetime)


def test_new_rows_get_fresh_ids_after_a_restore(engine: sa.Engine) -> None:
    fill(engine)
    backup = dumped(engine)
    wipe(engine)
    restore(engine, metadata, backup)
    with engine.begin() as conn:
        new_id = conn.execute(
            users.insert().values(email="new@example.com", is_admin=False, created_at=WHEN)
        ).inserted_primary_key[0]
    assert new_id > 7  # the sequence (PostgreSQL) or counter moved past the restored ids


def test_restore_refuses_a_database_that_holds_data(engine: sa.Engine) -> None:
    fill(engine)
    backup = dumped(engine)
    with pytest.raises(BackupError, match="not empty .*--force"):
        restore(engine, metadata, backup)


def test_forced_restore_replaces_the_contents(engine: sa.Engine) -> None:
    fill(engine)
    backup = dumped(engine)
    before = contents(engine)
    with engine.begin() as conn:
        conn.execute(config_vars.delete())
        conn.execute(users.update().values(is_admin=False))
        conn.execute(ssh_keys.insert().values(id=99, user_id=1, fingerprint="SHA256:zzz", public_key="k"))
    restore(engine, metadata, backup, force=True)
    assert contents(engine) == before


def test_a_failed_restore_leaves_the_database_untouched(engine: sa.Engine) -> None:
    fill(engine)
    before = contents(engine)
    lines = gzip.decompress(dumped(engine).getvalue()).decode().splitlines()
    lines.append('["not", "a", "valid", "row"]')  # wrong width for the last table
    broken = io.BytesIO(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(BackupError, match="damaged"):
        restore(engine, metadata, broken, force=True)
    assert contents(engine) == before


def test_the_dump_is_gzip_json_lines_in_dependency_order(tmp_path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    metadata.create_all(engine)
    fill(engine)
    lines = [json.loads(line) for line in gzip.decompress(dumped(engine).getvalue()).splitlines()]
    assert lines[0]["format"] == "teresa-backup"
    tables = [line["table"] for line in lines if isinstance(line, dict) and "table" in line]
    assert tables == [table.name for table in metadata.sorted_tables]
    assert tables.index("users") < tables.index("apps") < tables.index("releases")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"plain text, not gzip", "damaged or not a Teresa backup"),
        (gzip.compress(b'{"hello": 1}\n', mtime=0), "not a Teresa backup"),
        (gzip.compress(b'{"format": "teresa-backup", "version": 99}\n', mtime=0), "format version 99"),
        (gzip.compress(b'{"format": "teresa-backup", "version": 1}\n{"table": "nope", "columns": []}\n', mtime=0), "table 'nope'"),
    ],
)
def test_bad_backup_files_get_one_clear_sentence(tmp_path, payload: bytes, message: str) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    metadata.create_all(engine)
    with pytest.raises(BackupError, match=message) as info:
        restore(engine, metadata, io.BytesIO(payload))
    assert "\n" not in str(info.value)


def test_restore_needs_the_schema_in_place(tmp_path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    metadata.create_all(engine)
    backup = dumped(engine)
    empty = sa.create_engine(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    with pytest.raises(BackupError, match="run Teresa's migrations first"):
        restore(empty, metadata, backup)


def test_the_dump_is_one_snapshot_while_others_write(engine: sa.Engine, database_url: str) -> None:
    """A user and their app committed between the dump's reads of users and apps appear in neither."""
    fill(engine)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")  # readers keep a snapshot while a writer commits
    writer = sa.create_engine(database_url)
    wrote: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def write_meanwhile(conn, cursor, statement, parameters, context, executemany) -> None:
        if "FROM apps" in statement and not wrote:
            with writer.begin() as other:
                other.execute(users.insert().values(id=50, email="late@example.com", is_admin=False, created_at=WHEN))
                other.execute(apps.insert().values(id=51, name="lateapp", owner_id=50))
            wrote.append(statement)

    try:
        backup = dumped(engine)
    finally:
        sa.event.remove(engine, "before_cursor_execute", write_meanwhile)
        writer.dispose()
    assert wrote, "the dump never read the apps table"

    rows = [json.loads(line) for line in gzip.decompress(backup.getvalue()).splitlines()]
    section, ids = None, {"users": set(), "apps": set()}
    for row in rows[1:]:
        if isinstance(row, dict):
            section = row["table"]
        elif section in ids:
            ids[section].add(row[0])
    assert ids == {"users": {1, 7}, "apps": {2}}

    wipe(engine)
    restore(engine, metadata, io.BytesIO(backup.getvalue()))
    assert contents(engine)["apps"] == ROWS["apps"]


def test_rows_that_break_a_constraint_are_refused_without_quoting_them(engine: sa.Engine) -> None:
    fill(engine)
    lines = gzip.decompress(dumped(engine).getvalue()).decode().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith('[2,"DATABASE_URL"'))
    lines.insert(at, lines[at])  # the same config var twice: primary key violation
    with pytest.raises(BackupError, match="break a constraint") as info:
        restore(engine, metadata, io.BytesIO(gzip.compress(("\n".join(lines) + "\n").encode())), force=True)
    assert "postgres://u:p@h/db" not in str(info.value)
    assert contents(engine)["config_vars"] == ROWS["config_vars"]
