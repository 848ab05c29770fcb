"""After a crash: what was under way when the server stopped is marked `interrupted`, and each
app's runtime is brought back to its current release.

A build left `running` or a release left `deploying` in the database has nobody
working on it any more (deploys live in the server process); leaving them so
would show a build running for ever. The runtime restores what it ran from its
own state, which a crash may have left a step ahead of or behind the database
(a rollout that finished after its release was recorded as failed, or before it
was recorded at all); the database's current release wins.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller import releases
from controller.runtime.base import Runtime
from controller.spec import ReleaseSpec
from core import log as logging
from core.db import Database
from core.models import App, Build, Release, utcnow

log = logging.get(__name__)
INTERRUPTED = "interrupted"
REASON = "the server stopped while this was under way"


def mark_interrupted(session: Session) -> tuple[int, int]:
    """Builds left `running` and releases left `deploying` become `interrupted`; returns how many of each."""
    builds = list(session.scalars(select(Build).where(Build.status == "running")))
    for build in builds:
        build.status, build.reason, build.finished_at = INTERRUPTED, REASON, utcnow()
    deploys = list(session.scalars(select(Release).where(Release.status == "deploying")))
    for release in deploys:
        release.status, release.error = INTERRUPTED, REASON
    return len(builds), len(deploys)


def current_specs(session: Session) -> dict[str, ReleaseSpec | None]:
    """Every app and the release it should run (None: nothing released yet)."""
    wanted: dict[str, ReleaseSpec | None] = {}
    for app in session.scalars(select(App).order_by(App.name)):
        current = releases.current_release(session, app)
        wanted[app.name] = releases.record_spec(session, app, current) if current else None
    return wanted


async def recover(db: Database, runtime: Runtime) -> None:
    """Run once at start, before the server takes connections."""
    builds, deploys = await db.run(mark_interrupted)
    if builds or deploys:
        log.warning("interrupted_by_restart", builds=builds, releases=deploys)
    await runtime.reconcile(await db.run(current_specs))
