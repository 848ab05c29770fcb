"""The audit log: every mutating action recorded once, in the same transaction as its change.

An action (a command, a push, a dashboard rollback) runs inside `recording(...)`.
The first transaction of that action that changes something also inserts the
action's record, with the outcome "pending", so no change is ever committed
without its record; when the action ends, the record gets its outcome (that
one column, once, from "pending"). An action that changed nothing in the
database (a failed command, a restart refused, a backup written to storage)
is recorded when it ends, in a transaction of its own.

Nothing else updates or deletes records, except `prune`, which is itself recorded.

A denied action (someone outside the app's team, a non-admin) is recorded by its
name only, without its arguments, and at most DENIALS_PER_USER times per user in
DENIAL_WINDOW seconds (per process: `Database.denials`), so an outsider cannot
fill a team's feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterable

from sqlalchemy import ColumnElement, delete, event, select, update
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from core.models import App, AuditRecord, utcnow
from core.window import SlidingWindow

if TYPE_CHECKING:
    from core.db import Database  # the database installs this module's hooks: no import at run time

PENDING, SUCCEEDED, FAILED, DENIED = "pending", "succeeded", "failed", "denied"
LOCAL_ADDRESS = "local"
DENIALS_PER_USER, DENIAL_WINDOW = 10, 600.0


@dataclass(frozen=True)
class Who:
    """The actor as the record keeps it: email, and from where and with what credential they came."""

    email: str
    address: str
    credential: str


@dataclass
class Entry:
    """The action being recorded. `outcome`/`reason` are set by the code that knows how it ended."""

    who: Who
    action: str
    app: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    team_id: int | None = None
    outcome: str = SUCCEEDED
    reason: str = ""
    record_id: int | None = None
    closed: bool = False

    def row(self, outcome: str) -> AuditRecord:
        return AuditRecord(at=utcnow(), actor=self.who.email, action=self.action, app=self.app, team_id=self.team_id,
                           address=self.who.address[:64], credential=self.who.credential[:100],
                           details={} if outcome == DENIED else self.details, outcome=outcome,
                           reason=self.reason[:255])


class DenialBudget:
    """How many denied actions of each user are recorded: at most `per_user` in `window` seconds."""

    def __init__(self, per_user: int = DENIALS_PER_USER, window: float = DENIAL_WINDOW,
                 clock: Callable[[], float] = time.monotonic):
        self.per_user = per_user
        self.recent = SlidingWindow(window, clock)

    def admit(self, entry: Entry) -> bool:
        """Whether this ended action gets its record (counted if it is a denial). Called from the event loop."""
        if entry.outcome != DENIED or entry.record_id is not None:
            return True
        if self.recent.count(entry.who.email) >= self.per_user:
            return False
        self.recent.add(entry.who.email)
        return True


_current: contextvars.ContextVar[Entry | None] = contextvars.ContextVar("teresa_audit_entry", default=None)
_ROW = "teresa_audit_row"
_WROTE = "teresa_audit_wrote"


def _open_entry() -> Entry | None:
    entry = _current.get()
    return entry if entry is not None and not entry.closed and entry.record_id is None else None


def _changed(session: Session) -> bool:
    return bool(session.info.get(_WROTE) or session.new or session.deleted
                or any(session.is_modified(obj) for obj in session.dirty))


def _team_of(session: Session, app: str) -> int | None:
    for obj in session.new:
        if isinstance(obj, App) and obj.name == app:
            session.flush()
            return obj.team_id
    with session.no_autoflush:
        team_id: int | None = session.scalar(select(App.team_id).where(App.name == app))
        return team_id


def _before_commit(session: Session) -> None:
    entry = _open_entry()
    if entry is None or _ROW in session.info or not _changed(session):
        return
    if entry.app and entry.team_id is None:
        entry.team_id = _team_of(session, entry.app)
    row = entry.row(PENDING)
    session.add(row)
    session.info[_ROW] = row


def _after_commit(session: Session) -> None:
    row = session.info.pop(_ROW, None)
    session.info.pop(_WROTE, None)
    entry = _current.get()
    if row is not None and entry is not None:
        entry.record_id = row.id


def _after_rollback(session: Session) -> None:
    session.info.pop(_ROW, None)
    session.info.pop(_WROTE, None)


def _do_orm_execute(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:  # bulk statements bypass the unit of work
        state.session.info[_WROTE] = True


def install(sessions: sessionmaker[Session]) -> None:
    """Make the sessions of a `Database` attach the current action's record to its first change."""
    event.listen(sessions, "before_commit", _before_commit)
    event.listen(sessions, "after_commit", _after_commit)
    event.listen(sessions, "after_soft_rollback", lambda session, _tx: _after_rollback(session))
    event.listen(sessions, "do_orm_execute", _do_orm_execute)


@contextlib.asynccontextmanager
async def recording(db: "Database", entry: Entry) -> AsyncIterator[Entry]:
    """Record `entry` for the work inside; the caller sets `entry.outcome` (and `reason`) before leaving.

    An exception leaving the block marks the action failed unless the caller said otherwise.
    """
    if entry.app and entry.team_id is None:
        entry.team_id = await db.run(lambda s: _team_of(s, entry.app or ""))
    token = _current.set(entry)
    try:
        yield entry
    except BaseException as exc:
        if entry.outcome == SUCCEEDED:
            entry.outcome = FAILED
            entry.reason = entry.reason or ("interrupted" if isinstance(exc, asyncio.CancelledError) else "error")
        raise
    finally:
        entry.closed = True
        _current.reset(token)
        if db.denials.admit(entry):
            await asyncio.shield(db.run(lambda s: _finish(s, entry)))  # an interrupted action is recorded too


def _finish(session: Session, entry: Entry) -> None:
    if entry.record_id is None:
        session.add(entry.row(entry.outcome))
        return
    session.execute(update(AuditRecord).where(AuditRecord.id == entry.record_id, AuditRecord.outcome == PENDING)
                    .values(outcome=entry.outcome, reason=entry.reason[:255]))


async def record(db: "Database", entry: Entry) -> None:
    """Record an action that has already ended (a login, a refused push)."""
    entry.closed = True
    if not db.denials.admit(entry):
        return
    if entry.app and entry.team_id is None:
        entry.team_id = await db.run(lambda s: _team_of(s, entry.app or ""))
    await db.run(lambda s: _finish(s, entry))


# --- reading and pruning ------------------------------------------------------------------------


def query(session: Session, *, team_ids: Iterable[int] | None, app: str | None = None, actor: str | None = None,
          since: dt.datetime | None = None, limit: int = 1000) -> list[AuditRecord]:
    """Records, newest first; `team_ids` None means all (admins), else only those teams' apps."""
    conditions: list[ColumnElement[bool]] = []
    if team_ids is not None:
        conditions.append(AuditRecord.team_id.in_(list(team_ids)))
    if app is not None:
        conditions.append(AuditRecord.app == app)
    if actor is not None:
        conditions.append(AuditRecord.actor == actor)
    if since is not None:
        conditions.append(AuditRecord.at >= since)
    rows = session.scalars(select(AuditRecord).where(*conditions)
                           .order_by(AuditRecord.at.desc(), AuditRecord.id.desc()).limit(limit))
    return list(rows)


def as_dict(record: AuditRecord) -> dict[str, Any]:
    return {"id": record.id, "at": record.at.replace(microsecond=0).isoformat() + "Z", "actor": record.actor,
            "action": record.action, "app": record.app, "address": record.address,
            "credential": record.credential, "details": record.details, "outcome": record.outcome,
            "reason": record.reason}


SYSTEM = Who(email="teresa", address=LOCAL_ADDRESS, credential="retention")


async def prune(db: "Database", retention_days: int, now: dt.datetime | None = None) -> int:
    """Delete records older than the retention; the pruning is recorded, in the same transaction."""
    cutoff = (now or utcnow()) - dt.timedelta(days=retention_days)

    def work(session: Session) -> int:
        result = session.execute(delete(AuditRecord).where(AuditRecord.at < cutoff))
        removed: int = getattr(result, "rowcount", 0) or 0
        session.add(Entry(SYSTEM, "audit:prune", details={"before": cutoff.isoformat() + "Z", "removed": removed,
                                                          "retention_days": retention_days}).row(SUCCEEDED))
        return removed

    return await db.run(work)
