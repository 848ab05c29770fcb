"""One deploy at a time per app: who holds each app's deploy, and since when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class DeployLock:
    app: str
    user: str
    since: datetime

    def describe(self) -> str:
        return f"{self.user} started a deploy of {self.app} at {self.since:%Y-%m-%d %H:%M:%S} UTC"


class DeployLocks:
    """Only touched from the event loop thread, so no further locking is needed."""

    def __init__(self) -> None:
        self.held: dict[str, DeployLock] = {}

    def acquire(self, app: str, user: str) -> tuple[DeployLock, bool]:
        """Return (the lock, whether we got it); when refused, the lock is the holder's."""
        holder = self.held.get(app)
        if holder is not None:
            return holder, False
        lock = DeployLock(app, user, datetime.now(timezone.utc))
        self.held[app] = lock
        return lock, True

    def release(self, lock: DeployLock) -> None:
        if self.held.get(lock.app) is lock:
            del self.held[lock.app]
