"""Leases in the database: one holder at a time for a named piece of work, across every replica.

A lease is a row of the `leases` table: its name (`deploy:<app>`, `periodic:backup`),
who holds it (a person or a job), on which replica, since when, and until when. It is
taken atomically on SQLite, MariaDB and PostgreSQL alike with two statements that
each commit on their own:

- INSERT the row: succeeds when nobody has ever held it (or its holder released it);
- else UPDATE the row WHERE expires_at < now: succeeds when its holder stopped renewing.

Whoever gets a row count of one holds the lease; everyone else reads the row to say
who does. While the work runs, `Lease.renew` pushes `expires_at` forward (the holder
keeps a task doing so); a replica that dies leaves a row that expires within one
lease period, after which the next taker proceeds. Release deletes the row, guarded
by the holder's token so a late release never frees someone else's lease.

Time is the replicas' UTC clock: keep their clocks in sync (NTP, as Kubernetes nodes are).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator, Awaitable, Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from core import log as logging
from core.db import Database
from core.models import Lease as LeaseRow

log = logging.get(__name__)


def utcnow() -> datetime:
    """Naive UTC, microseconds kept, as every DateTime column of Teresa holds it."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, as read from its row."""

    name: str
    holder: str
    replica: str
    since: datetime  # naive UTC
    expires_at: datetime  # naive UTC


class LeaseTaken(Exception):
    """Someone else holds the lease."""

    def __init__(self, holder: Holder):
        super().__init__(f"{holder.name} is held by {holder.holder} on {holder.replica} since {holder.since}")
        self.holder = holder


@dataclass(frozen=True)
class Lease:
    """A lease this process holds; `token` proves it in every later statement."""

    name: str
    holder: str
    replica: str
    token: str
    since: datetime
    seconds: float
    took_over: bool  # an earlier holder's lease had expired: whatever it was doing was abandoned


def acquire(db: Database, name: str, holder: str, replica: str, seconds: float) -> Lease:
    """Take the lease or raise LeaseTaken naming its holder. Blocking: call it in a worker thread."""
    token = uuid.uuid4().hex
    now = utcnow()
    row = {"name": name, "holder": holder[:254], "replica": replica[:254], "token": token, "since": now,
           "expires_at": now + timedelta(seconds=seconds)}
    try:
        with db.engine.begin() as conn:
            conn.execute(sa.insert(LeaseRow).values(**row))
        return Lease(name, holder, replica, token, now, seconds, took_over=False)
    except IntegrityError:
        pass
    with db.engine.begin() as conn:
        taken = conn.execute(sa.update(LeaseRow).where(LeaseRow.name == name, LeaseRow.expires_at < now)
                             .values(**{k: v for k, v in row.items() if k != "name"})).rowcount
    if taken == 1:
        log.warning("lease_taken_over", lease=name, holder=holder, replica=replica)
        return Lease(name, holder, replica, token, now, seconds, took_over=True)
    current = read(db, name)
    if current is None:  # released between our two statements: try once more from the start
        return acquire(db, name, holder, replica, seconds)
    raise LeaseTaken(current)


def read(db: Database, name: str) -> Holder | None:
    with db.engine.connect() as conn:
        found = conn.execute(sa.select(LeaseRow.__table__).where(LeaseRow.name == name)).mappings().first()
    if found is None:
        return None
    return Holder(found["name"], found["holder"], found["replica"], found["since"], found["expires_at"])


def renew(db: Database, lease: Lease) -> bool:
    """Push the expiry one lease period ahead; False when the lease is no longer ours."""
    with db.engine.begin() as conn:
        count = conn.execute(sa.update(LeaseRow).where(LeaseRow.name == lease.name, LeaseRow.token == lease.token)
                             .values(expires_at=utcnow() + timedelta(seconds=lease.seconds))).rowcount
    return bool(count == 1)


def release(db: Database, lease: Lease) -> None:
    with db.engine.begin() as conn:
        conn.execute(sa.delete(LeaseRow).where(LeaseRow.name == lease.name, LeaseRow.token == lease.token))


async def _keep_renewed(db: Database, lease: Lease) -> None:
    """Renew three times per lease period; a failed renewal (database away) is retried at the next tick."""
    while True:
        await asyncio.sleep(lease.seconds / 3)
        try:
            if not await asyncio.to_thread(renew, db, lease):
                log.error("lease_lost", lease=lease.name, holder=lease.holder)
                return
        except sa.exc.SQLAlchemyError as exc:
            log.warning("lease_not_renewed", lease=lease.name, error=type(exc).__name__)


@contextlib.asynccontextmanager
async def held(db: Database, name: str, holder: str, replica: str, seconds: float) -> AsyncIterator[Lease]:
    """Hold the lease for the block, renewed while it runs; raises LeaseTaken when someone else holds it."""
    lease = await asyncio.to_thread(acquire, db, name, holder, replica, seconds)
    renewer = asyncio.create_task(_keep_renewed(db, lease))
    try:
        yield lease
    finally:
        renewer.cancel()
        await asyncio.shield(asyncio.to_thread(release, db, lease))


async def while_held(db: Database, name: str, replica: str, seconds: float,
                     work: Callable[[], Awaitable[None]]) -> None:
    """Run `work` on one replica at a time, for as long as this replica holds the lease `name`.

    For the server's background jobs (the crash-loop detector, audit pruning): the other replicas
    wait, asking again every third of a lease period, and the first to ask after the holder
    stops (or dies, and its lease expires) takes over. A lost lease stops the work here.
    Returns when `work` returns; runs until cancelled otherwise.
    """
    while True:
        try:
            lease = await asyncio.to_thread(acquire, db, name, "periodic", replica, seconds)
        except LeaseTaken:
            await asyncio.sleep(seconds / 3)
            continue
        except sa.exc.SQLAlchemyError as exc:
            log.warning("lease_unavailable", lease=name, error=type(exc).__name__)
            await asyncio.sleep(seconds / 3)
            continue
        renewer = asyncio.create_task(_keep_renewed(db, lease))
        worker = asyncio.ensure_future(work())
        try:
            await asyncio.wait({renewer, worker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            renewer.cancel()
            worker.cancel()
            await asyncio.shield(asyncio.to_thread(release, db, lease))
        if worker.done() and not worker.cancelled():
            worker.result()  # work that raised raises here
            return
