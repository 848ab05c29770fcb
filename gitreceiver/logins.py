"""Logins in the audit log: each SSH connection's success, or its failure when it ends unauthenticated."""

from __future__ import annotations

import asyncio

from core import audit
from core import log as logging
from core.db import Database

log = logging.get(__name__)


class LoginAudit:
    """Writes login records in the background: asyncssh's auth callbacks must not wait for the database."""

    def __init__(self, db: Database):
        self.db = db
        self.pending: set[asyncio.Task[None]] = set()

    def succeeded(self, who: audit.Who, method: str) -> None:
        self._record(audit.Entry(who, "login", details={"method": method}))

    def failed(self, *, user: str, address: str, method: str, credential: str) -> None:
        who = audit.Who(email=user[:254] or "?", address=address, credential=credential)
        self._record(audit.Entry(who, "login", details={"method": method}, outcome=audit.FAILED,
                                 reason="unknown key" if method == "publickey" else "wrong password or no such user"))

    def _record(self, entry: audit.Entry) -> None:
        task = asyncio.get_running_loop().create_task(self._write(entry))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _write(self, entry: audit.Entry) -> None:
        try:
            await audit.record(self.db, entry)
        except Exception:  # a login must not fail because its record could not be written; the log says so
            log.exception("login_not_recorded", user=entry.who.email, address=entry.who.address)

    async def drain(self) -> None:
        await asyncio.gather(*self.pending, return_exceptions=True)
