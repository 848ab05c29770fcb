"""Database engine, sessions off the event loop, and migrations."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable, TypeVar

from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from core import metrics
from core import audit
from core.private import private_file

T = TypeVar("T")
MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            # SQLite gives its -wal and -shm files the database file's mode: 0600 for all three.
            private_file(Path(parsed.database))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # hide_parameters: a failed INSERT of a release must not print its config vars into the log.
    return create_engine(url, pool_pre_ping=True, pool_recycle=3600, pool_size=10, max_overflow=20,
                         hide_parameters=True)


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def upgrade(engine: Engine) -> None:
    """Apply every pending migration."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            # SQLite changes a table by rebuilding it; with foreign keys on, dropping the old
            # table would cascade into every table that refers to it. The pragma only takes
            # effect outside a transaction, so it is set before the migrations begin.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                alembic_command.upgrade(config, "head")
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


class Database:
    """Runs session work in a worker thread so no query blocks the event loop."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        audit.install(self.sessions)  # a change made while an action is recorded carries its record
        self.denials = audit.DenialBudget()  # how many denied actions each user gets recorded

    def upgrade(self) -> None:
        upgrade(self.engine)

    def transaction(self, work: Callable[[Session], T]) -> T:
        try:
            with self.sessions.begin() as session:
                return work(session)
        except DBAPIError as exc:
            if not isinstance(exc, IntegrityError):  # a refused duplicate is the caller's answer, not trouble
                metrics.database_errors_total.labels(error=type(exc).__name__).inc()
            raise

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run `work(session)` in one transaction, in a worker thread."""
        return await asyncio.to_thread(self.transaction, work)

    def dispose(self) -> None:
        self.engine.dispose()
