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

A holder that loses its lease (another took it over, or the database could not be
reached to renew it before it expired) stops: `held` cancels the work running under
it, which leaves the block as `LeaseLost`, and `Held.fence` refuses, in the writing
transaction itself, a write made after the loss but before the renewer noticed it.

Time is the replicas' UTC clock: keep their clocks in sync (NTP, as Kubernetes nodes are).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator, Awaitable, Callable, Iterator

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

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


class LeaseLost(Exception):
    """The lease was lost while its work ran: another holder took it, or it could not be renewed in time."""

    def __init__(self, lease: Lease):
        super().__init__(f"{lease.name} was lost: another holder took it over, or it could not be renewed in time")
        self.lease = lease


class Held:
    """A lease while its block runs. Once it is lost, every task `guard`ed is cancelled and `fence` refuses."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.lost = False
        self._guarded: set[asyncio.Task[object]] = set()
        self._cancelled: set[asyncio.Task[object]] = set()

    def ended(self, renewer: asyncio.Task[None]) -> None:
        """The renewer's end: the lease was lost, unless the block ended first (the renewer cancelled)."""
        if not renewer.cancelled():
            self.lose()

    def lose(self) -> None:
        self.lost = True
        for task in self._guarded - self._cancelled:
            if task.cancel(f"lease {self.lease.name} lost"):
                self._cancelled.add(task)

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """The current task works under the lease for the block: a loss cancels it, and the block raises LeaseLost."""
        task = asyncio.current_task()
        assert task is not None
        if self.lost:
            raise LeaseLost(self.lease)
        floor = task.cancelling()
        self._guarded.add(task)
        try:
            yield
        except asyncio.CancelledError:
            if self._withdrawn(task, floor):
                raise LeaseLost(self.lease) from None
            raise
        finally:
            self._guarded.discard(task)
            self._withdrawn(task, floor)

    def _withdrawn(self, task: asyncio.Task[object], floor: int) -> bool:
        """Withdraw the loss's cancellation of `task`; whether it was the only one (nobody else cancelled it)."""
        if task not in self._cancelled:
            return False
        self._cancelled.discard(task)
        return task.uncancel() <= floor

    def fence(self, session: Session) -> None:
        """Raise LeaseLost unless the lease is still this holder's, in the transaction of `session` (which locks
        the row where the database can: a taker waits for the transaction's end)."""
        lease = self.lease
        if not self.lost and session.execute(
                sa.select(LeaseRow.token).where(LeaseRow.name == lease.name, LeaseRow.token == lease.token,
                                                LeaseRow.expires_at > utcnow()).with_for_update()).first():
            return
        raise LeaseLost(lease)


async def _keep_renewed(db: Database, lease: Lease) -> None:
    """Renew three times per lease period; returns once the lease is lost: another holder took it, or no renewal
    (the database away, retried at each tick) succeeded before it would expire."""
    expires = time.monotonic() + lease.seconds
    while True:
        await asyncio.sleep(lease.seconds / 3)
        asked = time.monotonic()
        try:
            if not await asyncio.to_thread(renew, db, lease):
                log.error("lease_lost", lease=lease.name, holder=lease.holder, reason="taken over")
                return
            expires = asked + lease.seconds
        except sa.exc.SQLAlchemyError as exc:
            log.warning("lease_not_renewed", lease=lease.name, error=type(exc).__name__)
            if time.monotonic() + lease.seconds / 3 >= expires:
                log.error("lease_lost", lease=lease.name, holder=lease.holder, reason="not renewed in time")
                return


@contextlib.asynccontextmanager
async def held(db: Database, name: str, holder: str, replica: str, seconds: float) -> AsyncIterator[Held]:
    """Hold the lease for the block, renewed while it runs; raises LeaseTaken when someone else holds it.

    The block's task is guarded (other tasks working under the lease call `guard` themselves): when the lease
    is lost they are cancelled, and the block raises LeaseLost.
    """
    lease = await asyncio.to_thread(acquire, db, name, holder, replica, seconds)
    holding = Held(lease)
    renewer = asyncio.create_task(_keep_renewed(db, lease))
    renewer.add_done_callback(holding.ended)
    try:
        with holding.guard():
            yield holding
    finally:
        renewer.cancel()
        await asyncio.shield(asyncio.to_thread(release, db, lease))


async def while_held(db: Database, name: str, replica: str, seconds: float,
                     work: Callable[[], Awaitable[None]]) -> None:
    """Run `work` on one replica at a time, for as long as this replica holds the lease `name`.

    For the server's background jobs (the crash-loop detector, audit pruning): the other replicas
    wait, asking again every third of a lease period, and the first to ask after the holder
    stops (or dies, and its lease expires) takes over. A lost lease stops the work here, and this
    replica asks again. Returns when `work` returns; runs until cancelled otherwise.
    """
    while True:
        began = False
        try:
            async with held(db, name, "periodic", replica, seconds):
                began = True
                await work()
            return
        except LeaseLost:
            pass
        except (LeaseTaken, sa.exc.SQLAlchemyError) as exc:
            if began:  # the work's own error
                raise
            if not isinstance(exc, LeaseTaken):
                log.warning("lease_unavailable", lease=name, error=type(exc).__name__)
        await asyncio.sleep(seconds / 3)
