"""One deploy at a time per app: who holds each app's deploy, and since when.

Every path that changes what runs (push, config, scale, restart, rollback,
destroy) goes through `Controller.deploy_lock`, which uses these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from core.commands import CommandError


@dataclass(frozen=True)
class DeployLock:
    app: str
    user: str
    since: datetime

    def describe(self) -> str:
        return f"{self.user} started a deploy of {self.app} at {self.since:%Y-%m-%d %H:%M:%S} UTC"


class DeployInProgress(CommandError):
    """Another deploy of the app holds its lock."""

    def __init__(self, holder: DeployLock):
        super().__init__(f"{holder.describe()}; wait for it to finish, then try again.")
        self.holder = holder


class DeployLocks:
    """Only touched from the event loop thread, so no further locking is needed."""

    def __init__(self) -> None:
        self.held: dict[str, DeployLock] = {}

    def acquire(self, app: str, user: str) -> DeployLock:
        """The new lock; raises DeployInProgress naming the holder when the app's lock is taken."""
        holder = self.held.get(app)
        if holder is not None:
            raise DeployInProgress(holder)
        lock = DeployLock(app, user, datetime.now(timezone.utc))
        self.held[app] = lock
        return lock

    def release(self, lock: DeployLock) -> None:
        if self.held.get(lock.app) is lock:
            del self.held[lock.app]

    def holds(self, app: str) -> bool:
        return app in self.held
