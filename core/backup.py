"""Backups of Teresa's own database: a portable dump, its restore, and retention.

A dump is gzip'd JSON lines: a header line, then for each table (in
dependency order) a line naming the table and its columns followed by one
JSON array per row. Values JSON cannot hold are written as strings and read
back through the column's type: datetimes and dates as ISO 8601, bytes as
base64, decimals as strings. Backups live in storage as
`backups/teresa-YYYYmmddTHHMMSSZ.json.gz`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import decimal
import enum
import gzip
import io
import json
import re
import tempfile
import uuid
from dataclasses import dataclass
from typing import IO, Any, AsyncIterator, Awaitable, BinaryIO, Callable, Iterable, Iterator

import sqlalchemy as sa
import structlog

from core import metrics
from core.storage import Storage

FORMAT = "teresa-backup"
VERSION = 1
PREFIX = "backups/"
INSERT_BATCH = 500
_NAME = re.compile(r"^teresa-(\d{8}T\d{6}Z)\.json\.gz$")

log = structlog.get_logger(__name__)


class BackupError(Exception):
    """A backup cannot be made or restored; the message says why and what to do."""


# --- retention --------------------------------------------------------------

YOUNG = dt.timedelta(days=30)
DAILY = dt.timedelta(days=365)


def prune(backups: Iterable[dt.datetime], now: dt.datetime) -> set[dt.datetime]:
    """The backups to delete.

    Kept: every backup younger than 30 days; the first backup of each (UTC)
    day while it is younger than a year; the first backup of each month
    forever. Keeping a first-of-day or first-of-month backup of the full set
    also keeps it in any subset, so pruning again — now or later — never
    deletes more than pruning once would.
    """
    backups = set(backups)
    first_of_day: dict[dt.date, dt.datetime] = {}
    first_of_month: dict[tuple[int, int], dt.datetime] = {}
    for taken in sorted(backups):
        utc = taken.astimezone(dt.timezone.utc)
        first_of_day.setdefault(utc.date(), taken)
        first_of_month.setdefault((utc.year, utc.month), taken)
    keep = {taken for taken in backups if now - taken < YOUNG}
    keep |= {taken for taken in first_of_day.values() if now - taken < DAILY}
    keep |= set(first_of_month.values())
    return backups - keep


# --- dump and restore -------------------------------------------------------

def dump(engine: sa.Engine, metadata: sa.MetaData, fileobj: BinaryIO) -> None:
    """Write every table of metadata to fileobj, all read inside one snapshot."""
    with gzip.GzipFile(fileobj=fileobj, mode="wb", mtime=0) as raw, \
            io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as out, _snapshot(engine) as conn:
        _line(out, {"format": FORMAT, "version": VERSION, "dialect": engine.dialect.name})
        for table in metadata.sorted_tables:
            columns = [column.name for column in table.columns]
            _line(out, {"table": table.name, "columns": columns})
            query = sa.select(table).order_by(*(table.primary_key.columns or table.columns))
            for row in conn.execution_options(yield_per=1000).execute(query):
                _line(out, [_encode(value) for value in row])


def restore(engine: sa.Engine, metadata: sa.MetaData, fileobj: BinaryIO, force: bool = False) -> dict[str, int]:
    """Load a dump into the (already migrated) database; return rows restored per table.

    Refuses a database that holds any rows unless force, which deletes them
    first. Everything happens in one transaction: on any error the database
    is left as it was.
    """
    try:
        with gzip.GzipFile(fileobj=fileobj, mode="rb") as raw, \
                io.TextIOWrapper(raw, encoding="utf-8") as lines, engine.begin() as conn:
            _check_header(next(lines, ""))
            _prepare(conn, metadata, force)
            counts = _load(conn, metadata, lines)
            if conn.dialect.name == "postgresql":
                _reset_sequences(conn, metadata)
    except (gzip.BadGzipFile, EOFError, ValueError, TypeError, KeyError) as exc:  # includes JSON and base64 errors
        raise BackupError(f"The backup is damaged or not a Teresa backup ({exc}); pick another with backup:list.") from None
    except sa.exc.IntegrityError:
        # the driver's message may quote row values, which can be secrets: leave it out
        raise BackupError("The backup's rows break a constraint of this database; restore it into a database migrated to the version that made it.") from None
    return counts


@contextlib.contextmanager
def _snapshot(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A read transaction that sees one consistent state of the whole database."""
    dialect = engine.dialect.name
    options = {} if dialect == "sqlite" else {"isolation_level": "REPEATABLE READ"}
    with engine.connect().execution_options(**options) as conn:
        if dialect == "sqlite":
            conn.exec_driver_sql("BEGIN")  # pysqlite does not begin a transaction before a SELECT
        elif dialect in ("mysql", "mariadb"):
            conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        else:
            conn.begin()
        try:
            yield conn
        finally:
            conn.rollback()


def _line(out: IO[str], value: object) -> None:
    out.write(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
    out.write("\n")


def _encode(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return value.name
    return value


def _decoder(column: sa.Column[Any]) -> Callable[[Any], Any]:
    try:
        kind = column.type.python_type
    except NotImplementedError:
        return lambda value: value
    if kind is dt.datetime:
        return dt.datetime.fromisoformat
    if kind is dt.date:
        return dt.date.fromisoformat
    if kind is dt.time:
        return dt.time.fromisoformat
    if kind is bytes:
        return base64.b64decode
    if kind is decimal.Decimal:
        return decimal.Decimal
    if kind is uuid.UUID:
        return uuid.UUID
    if kind is dt.timedelta:
        return lambda seconds: dt.timedelta(seconds=seconds)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return lambda name: kind[name]
    return lambda value: value


def _check_header(line: str) -> None:
    header = json.loads(line) if line.strip() else {}
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError("This file is not a Teresa backup; pick one listed by backup:list.")
    if header.get("version") != VERSION:
        raise BackupError(f"This backup has format version {header.get('version')}, this Teresa reads {VERSION}; restore it with a matching Teresa.")


def _prepare(conn: sa.Connection, metadata: sa.MetaData, force: bool) -> None:
    existing = set(sa.inspect(conn).get_table_names())
    missing = [table.name for table in metadata.sorted_tables if table.name not in existing]
    if missing:
        raise BackupError(f"The database has no table {missing[0]}; run Teresa's migrations first, then restore.")
    for table in metadata.sorted_tables:
        if conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first() is None:
            continue
        if not force:
            raise BackupError(f"The database is not empty (table {table.name} has rows); restore into an empty database or pass --force to replace its contents.")
    if force:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


@dataclass
class _Section:
    """The table a dump is currently loading, with its rows waiting to be inserted."""

    table: sa.Table
    columns: list[str]
    decoders: list[Callable[[Any], Any]]
    batch: list[dict[str, object]]
    count: int = 0

    def add(self, row: list[object]) -> None:
        values = zip(self.columns, self.decoders, row, strict=True)
        self.batch.append({name: None if value is None else decode(value) for name, decode, value in values})

    def flush(self, conn: sa.Connection) -> None:
        if self.batch:
            conn.execute(self.table.insert(), self.batch)
            self.count += len(self.batch)
            self.batch = []


def _load(conn: sa.Connection, metadata: sa.MetaData, lines: Iterable[str]) -> dict[str, int]:
    sections: list[_Section] = []
    for line in lines:
        value = json.loads(line)
        if isinstance(value, dict):
            if sections:
                sections[-1].flush(conn)
            sections.append(_start(metadata, value, [s.table.name for s in sections]))
        elif not sections:
            raise BackupError("The backup has rows before any table; it is damaged, pick another with backup:list.")
        else:
            sections[-1].add(value)
            if len(sections[-1].batch) >= INSERT_BATCH:
                sections[-1].flush(conn)
    if sections:
        sections[-1].flush(conn)
    return {section.table.name: section.count for section in sections}


def _start(metadata: sa.MetaData, header: dict[str, Any], done: list[str]) -> _Section:
    order = [table.name for table in metadata.sorted_tables]
    name = header.get("table")
    if not isinstance(name, str) or name not in metadata.tables:
        raise BackupError(f"The backup has a table {name!r} this Teresa does not know; restore it with the Teresa version that made it.")
    if any(order.index(seen) > order.index(name) for seen in done):
        raise BackupError(f"The backup lists table {name} out of dependency order; it was not written by Teresa's dump.")
    table = metadata.tables[name]
    unknown = [column for column in header["columns"] if column not in table.columns]
    if unknown:
        raise BackupError(f"The backup has a column {name}.{unknown[0]} this Teresa does not know; restore it with the Teresa version that made it.")
    columns = list(header["columns"])
    return _Section(table, columns, [_decoder(table.columns[c]) for c in columns], [])


def _reset_sequences(conn: sa.Connection, metadata: sa.MetaData) -> None:
    """Move each serial/identity sequence past the restored ids, so the next insert does not collide."""
    preparer = conn.dialect.identifier_preparer
    for table in metadata.sorted_tables:
        for column in table.primary_key.columns:
            if not column.autoincrement or column.type._type_affinity is not sa.Integer:
                continue
            qualified = preparer.format_table(table)
            quoted_column = preparer.quote(column.name)
            conn.execute(
                sa.text(
                    f"SELECT setval(pg_get_serial_sequence(:table, :column), "
                    f"COALESCE(MAX({quoted_column}), 1), MAX({quoted_column}) IS NOT NULL) FROM {qualified}"
                ),
                {"table": qualified, "column": column.name},
            )


# --- backups in storage -------------------------------------------------------

@dataclass(frozen=True, order=True)
class Backup:
    taken_at: dt.datetime
    key: str

    @property
    def name(self) -> str:
        return self.key.removeprefix(PREFIX)


def backup_key(taken_at: dt.datetime) -> str:
    return f"{PREFIX}teresa-{taken_at.astimezone(dt.timezone.utc):%Y%m%dT%H%M%SZ}.json.gz"


def list_backups(storage: Storage) -> list[Backup]:
    """Teresa's backups in storage, oldest first; other objects under backups/ are ignored."""
    found = []
    for key in storage.list(PREFIX):
        match = _NAME.match(key.removeprefix(PREFIX))
        if match:
            taken = dt.datetime.strptime(match[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
            found.append(Backup(taken, key))
    return sorted(found)


def backup_to_storage(engine: sa.Engine, metadata: sa.MetaData, storage: Storage, now: dt.datetime) -> Backup:
    """Dump the database into storage under a name made from now; return the backup."""
    key = backup_key(now)
    with tempfile.TemporaryFile() as spool:
        dump(engine, metadata, spool)
        spool.seek(0)
        storage.put_stream(key, spool)
    taken = Backup(now.astimezone(dt.timezone.utc).replace(microsecond=0), key)
    metrics.backup_last_success.set(taken.taken_at.timestamp())
    return taken


def restore_from_storage(
    engine: sa.Engine, metadata: sa.MetaData, storage: Storage, name: str, force: bool = False
) -> dict[str, int]:
    """Restore the backup called name (`teresa-….json.gz`, with or without `backups/`)."""
    wanted = name.removeprefix(PREFIX)
    backup = next((b for b in list_backups(storage) if b.name == wanted), None)
    if backup is None:
        raise BackupError(f"There is no backup named {name}; `teresa backup:list` shows the backups there are.")
    with tempfile.TemporaryFile() as spool:
        with storage.open_read(backup.key) as stream:
            while chunk := stream.read(1 << 20):
                spool.write(chunk)
        spool.seek(0)
        return restore(engine, metadata, spool, force=force)


def prune_storage(storage: Storage, now: dt.datetime) -> list[Backup]:
    """Delete the backups the retention rule lets go; return them."""
    backups = list_backups(storage)
    doomed = prune([b.taken_at for b in backups], now)
    gone = [b for b in backups if b.taken_at in doomed]
    for backup in gone:
        storage.delete_prefix(backup.key)
    return gone


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


async def run_periodic_backups(
    engine: sa.Engine,
    metadata: sa.MetaData,
    storage: Storage,
    interval: dt.timedelta,
    *,
    clock: Callable[[], dt.datetime] = _utcnow,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    exclusive: Callable[[], contextlib.AbstractAsyncContextManager[bool]] | None = None,
) -> None:
    """Take a backup whenever the newest one is `interval` old, and prune after each; runs until cancelled.

    With several replicas, `exclusive()` says (entered) whether this one may take the backup now: the
    others skip, and the newest backup is looked up again inside it, so one interval gets one backup.
    A failed backup is logged and tried again after `interval`; it never stops the loop.
    """
    metrics.backup_interval.set(interval.total_seconds())
    while True:
        backups = await asyncio.to_thread(list_backups, storage)
        if backups:  # a restarted server knows how old the newest backup is
            metrics.backup_last_success.set(backups[-1].taken_at.timestamp())
        now = clock()
        due = backups[-1].taken_at + interval if backups else now
        if now >= due:
            async with exclusive() if exclusive else _always() as mine:
                if mine:
                    due = await _backup_if_due(engine, metadata, storage, interval, clock)
        await sleep(max((due - clock()).total_seconds(), 1.0))


@contextlib.asynccontextmanager
async def _always() -> AsyncIterator[bool]:
    yield True


async def _backup_if_due(engine: sa.Engine, metadata: sa.MetaData, storage: Storage, interval: dt.timedelta,
                         clock: Callable[[], dt.datetime]) -> dt.datetime:
    """Back up unless a backup younger than `interval` exists (another replica's); returns when the next is due."""
    backups = await asyncio.to_thread(list_backups, storage)
    now = clock()
    if backups and backups[-1].taken_at + interval > now:
        return backups[-1].taken_at + interval
    try:
        backup = await asyncio.to_thread(backup_to_storage, engine, metadata, storage, now)
        gone = await asyncio.to_thread(prune_storage, storage, now)
        metrics.backups_total.labels(outcome="succeeded").inc()
        log.info("backup taken", backup=backup.name, pruned=len(gone))
    except Exception as exc:  # keep serving; the next attempt may succeed
        metrics.backups_total.labels(outcome="failed").inc()
        log.error("backup failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return now + interval
