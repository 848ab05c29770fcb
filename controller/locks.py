"""One deploy at a time per app, across every replica: who holds each app's deploy, and since when.

Every path that changes what runs (push, config, scale, restart, rollback,
destroy) goes through `Controller.deploy_lock`, which uses these. The lock is a
database lease (`core/leases.py`) named `deploy:<app>`, renewed while the deploy
runs; a replica that dies mid-deploy leaves a lease that expires within
TERESA_DEPLOY_LEASE_SECONDS, and the next deploy marks what it left behind as abandoned.
A replica that loses the lease while it still runs (the database away, its lease taken
over) stops the deploy: its work is cancelled and its writes are fenced (`guard`, `fence`),
and the user reads `DeployLockLost`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import AsyncIterator, Iterator

from sqlalchemy import update
from sqlalchemy.orm import Session

from core import leases
from core.commands import CommandError
from core.db import Database
from core.models import App, Build, Release, utcnow

ABANDONED = "abandoned"  # the status of a build whose replica stopped before it finished
ABANDONED_REASON = "the replica running it stopped"


@dataclass(frozen=True)
class DeployLock:
    app: str
    user: str
    since: datetime  # aware UTC

    def describe(self) -> str:
        return f"{self.user} started a deploy of {self.app} at {self.since:%Y-%m-%d %H:%M:%S} UTC"


class DeployInProgress(CommandError):
    """Another deploy of the app holds its lock."""

    def __init__(self, holder: DeployLock):
        super().__init__(f"{holder.describe()}; wait for it to finish, then try again.")
        self.holder = holder


class DeployLockLost(CommandError):
    """This server lost the app's deploy lock while the deploy ran, and stopped it."""

    def __init__(self, app: str):
        super().__init__(f"The deploy of {app} was stopped: this server lost the app's deploy lock (another server "
                         f"took it over, or the database could not be reached to renew it); run: releases {app}, "
                         "then try again.")


@contextlib.contextmanager
def _reported(app: str) -> Iterator[None]:
    try:
        yield
    except leases.LeaseLost:
        raise DeployLockLost(app) from None


def lease_name(app: str) -> str:
    return f"deploy:{app}"


class DeployLocks:
    """Deploy leases in the database; `holds` answers for this process's own."""

    def __init__(self, db: Database, replica: str, seconds: float) -> None:
        self.db = db
        self.replica = replica
        self.seconds = seconds
        self.held: dict[str, leases.Held] = {}

    @contextlib.asynccontextmanager
    async def hold(self, app: str, user: str) -> AsyncIterator[DeployLock]:
        """The app's lease for the block; raises DeployInProgress naming the holder when it is taken,
        DeployLockLost when it is lost before the block ends."""
        try:
            with _reported(app):
                async with leases.held(self.db, lease_name(app), user, self.replica, self.seconds) as holding:
                    if holding.lease.took_over:
                        await self.db.run(lambda s: mark_abandoned(s, app))
                    self.held[app] = holding
                    try:
                        yield DeployLock(app, user, holding.lease.since.replace(tzinfo=timezone.utc))
                    finally:
                        self.held.pop(app, None)
        except leases.LeaseTaken as exc:
            holder = exc.holder
            raise DeployInProgress(DeployLock(app, holder.holder, holder.since.replace(tzinfo=timezone.utc))) from None

    def holds(self, app: str) -> bool:
        return app in self.held and not self.held[app].lost

    @contextlib.contextmanager
    def guard(self, app: str) -> Iterator[None]:
        """The current task deploys under the app's lock (taken by another task): losing the lock stops it,
        as DeployLockLost."""
        with _reported(app), self.held[app].guard():
            yield

    def fence(self, session: Session, app: str) -> None:
        """In the transaction of a deploy's write: raise DeployLockLost unless this server still holds the lock."""
        with _reported(app):
            self.held[app].fence(session)


def mark_abandoned(session: Session, app_name: str) -> None:
    """Builds and releases left running by a replica whose lease expired: nobody will finish them."""
    app_id = session.query(App.id).filter(App.name == app_name).scalar()
    if app_id is None:
        return
    session.execute(update(Build).where(Build.app_id == app_id, Build.status == "running")
                    .values(status=ABANDONED, reason=ABANDONED_REASON, finished_at=utcnow()))
    session.execute(update(Release).where(Release.app_id == app_id, Release.status == "deploying")
                    .values(status="failed", error=f"{ABANDONED}: {ABANDONED_REASON}"))
