"""After a crash: what was under way when the server stopped is marked `interrupted`, and each
app's runtime is brought back to its current release.

A build left `running` or a release left `deploying` in the database has nobody
working on it any more (deploys live in the server process); leaving them so
would show a build running for ever. The runtime restores what it ran from its
own state, which a crash may have left a step ahead of or behind the database
(a rollout that finished after its release was recorded as failed, or before it
was recorded at all); the database's current release wins.

Replicas share the database: a build `running` there may be another live replica's.
Only the work of apps whose deploy lease (controller/locks.py) nobody live holds is
marked: no lease row, an expired one, or one held under this replica's own name (left
by the process this one replaces: nothing is held yet while recovering). Those
own-name leases are released here, so the next push need not wait for them to expire.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controller import releases
from controller.runtime.base import Runtime
from controller.spec import ReleaseSpec
from core import log as logging
from core.db import Database
from core.leases import utcnow as precise_utcnow
from core.models import App, Build, Lease, Release, utcnow

log = logging.get(__name__)
INTERRUPTED = "interrupted"
REASON = "the server stopped while this was under way"


DEPLOY_LEASE_PREFIX = "deploy:"  # controller.locks.lease_name


def live_deploys(session: Session, replica: str, now: datetime) -> set[str]:
    """Apps whose deploy lease another live replica holds (unexpired, not under this replica's name)."""
    rows = session.scalars(select(Lease).where(Lease.name.startswith(DEPLOY_LEASE_PREFIX, autoescape=True)))
    return {row.name.removeprefix(DEPLOY_LEASE_PREFIX) for row in rows
            if row.expires_at >= now and row.replica != replica[:254]}


def mark_interrupted(session: Session, replica: str = "") -> tuple[int, int]:
    """Builds left `running` and releases left `deploying` become `interrupted`, except those of apps another
    live replica is deploying; this replica's own leases (a previous process's) are released. Returns how
    many builds and releases were marked."""
    now = precise_utcnow()
    busy = live_deploys(session, replica, now)
    busy_ids = select(App.id).where(App.name.in_(busy))
    # Started before the leases were read: a build started since is a live replica's, whatever its lease said.
    builds = list(session.scalars(select(Build).where(Build.status == "running", Build.started_at <= now,
                                                      Build.app_id.not_in(busy_ids))))
    for build in builds:
        build.status, build.reason, build.finished_at = INTERRUPTED, REASON, utcnow()
    deploys = list(session.scalars(select(Release).where(Release.status == "deploying", Release.created_at <= now,
                                                         Release.app_id.not_in(busy_ids))))
    for release in deploys:
        release.status, release.error = INTERRUPTED, REASON
    if replica:
        session.execute(delete(Lease).where(Lease.replica == replica[:254]))
    return len(builds), len(deploys)


def current_specs(session: Session) -> dict[str, ReleaseSpec | None]:
    """Every app and the release it should run (None: nothing released yet)."""
    wanted: dict[str, ReleaseSpec | None] = {}
    for app in session.scalars(select(App).order_by(App.name)):
        current = releases.current_release(session, app)
        wanted[app.name] = releases.record_spec(session, app, current) if current else None
    return wanted


async def recover(db: Database, runtime: Runtime, replica: str = "") -> None:
    """Run once at start, before the server takes connections; `replica` is this process's replica name."""
    builds, deploys = await db.run(lambda session: mark_interrupted(session, replica))
    if builds or deploys:
        log.warning("interrupted_by_restart", builds=builds, releases=deploys)
    await runtime.reconcile(await db.run(current_specs))
