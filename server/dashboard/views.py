"""What the pages show, read from the database (in worker threads) and the runtime. Config values never leave here."""

from __future__ import annotations

import codecs
import collections
from dataclasses import dataclass
from typing import Any, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller import releases
from controller.platform import Platform
from controller.runtime.base import ProcessStatus
from core import audit
from core import log as logging
from core.commands import Actor
from core.layout import BuildKeys
from core.models import App, AuditRecord, Build, Release
from core.storage import Storage, StorageNotFound
from keys import access

log = logging.get(__name__)
MAX_LOG_BYTES = 2 << 20  # the tail of a stored build log a page shows
LOG_CHUNK = 64 << 10
CUT_NOTICE = "[… earlier lines cut …]\n"


@dataclass(frozen=True)
class AppSummary:
    name: str
    team: str
    release: int | None
    last_build: Build | None
    domains: list[str]


@dataclass(frozen=True)
class AppDetail:
    summary: AppSummary
    config_names: list[str]
    releases: list[Release]
    builds: list[Build]
    activity: list[AuditRecord]


@dataclass(frozen=True)
class ReleaseDiff:
    older: int
    newer: int
    added: list[str]
    removed: list[str]
    changed: list[str]  # names whose values differ; the values are never shown
    build: tuple[str, str] | None
    processes: list[str]


def _summary(session: Session, app: App) -> AppSummary:
    last = session.scalar(select(Build).where(Build.app_id == app.id).order_by(Build.number.desc()).limit(1))
    return AppSummary(app.name, app.team.name, app.current_release, last,
                      list(releases.domains_of(session, app)))


def app_summaries(session: Session, actor: Actor) -> list[AppSummary]:
    return [_summary(session, app) for app in access.visible_apps(session, actor)]


def visible_app(session: Session, actor: Actor, name: str) -> App:
    """The app, if this actor may see it; raises CommandError (shown as 404) otherwise."""
    return access.app_for(session, actor, name)


def app_detail(session: Session, actor: Actor, name: str) -> AppDetail:
    app = visible_app(session, actor, name)
    rows = list(session.scalars(select(Release).where(Release.app_id == app.id).order_by(Release.version.desc())
                                .limit(50)))
    builds = list(session.scalars(select(Build).where(Build.app_id == app.id).order_by(Build.number.desc())
                                  .limit(50)))
    teams = None if actor.is_admin else access.member_team_ids(session, actor)
    activity = audit.query(session, team_ids=teams, app=app.name, limit=50)
    return AppDetail(_summary(session, app), sorted(releases.config_of(session, app)), rows, builds, activity)


def release_diff(session: Session, actor: Actor, name: str, older: int, newer: int) -> ReleaseDiff | None:
    app = visible_app(session, actor, name)
    a, b = releases.release_by_version(session, app, older), releases.release_by_version(session, app, newer)
    if a is None or b is None:
        return None
    return ReleaseDiff(
        older=older, newer=newer, added=sorted(set(b.config) - set(a.config)),
        removed=sorted(set(a.config) - set(b.config)),
        changed=sorted(k for k in set(a.config) & set(b.config) if a.config[k] != b.config[k]),
        build=(a.build_id, b.build_id) if a.build_id != b.build_id else None,
        processes=sorted(k for k in set(a.processes) | set(b.processes) if a.processes.get(k) != b.processes.get(k)),
    )


def build_of(session: Session, actor: Actor, name: str, number: int) -> Build | None:
    app = visible_app(session, actor, name)
    return session.scalar(select(Build).where(Build.app_id == app.id, Build.number == number))


def stored_log(storage: Storage, app: str, build_id: str) -> Iterator[str]:
    """The stored log's last MAX_LOG_BYTES, from a line's start, as text in pieces (blocking: take each
    piece in a worker thread); nothing when there is no log. Only those bytes are read from storage."""
    try:
        stream, cut = storage.open_tail(BuildKeys(app, build_id).log, MAX_LOG_BYTES)
    except StorageNotFound:
        return
    decode = codecs.getincrementaldecoder("utf-8")("replace").decode
    with stream:
        chunk = stream.read(LOG_CHUNK)
        if cut:
            yield CUT_NOTICE
            while chunk and b"\n" not in chunk:  # the first line began before the tail: skip it
                chunk = stream.read(LOG_CHUNK)
            chunk = chunk.partition(b"\n")[2]
        while chunk:
            yield decode(chunk)
            chunk = stream.read(LOG_CHUNK)
    yield decode(b"", final=True)


def process_rows(processes: list[ProcessStatus]) -> list[dict[str, Any]]:
    return [{"type": p.type, "replica": p.replica, "state": p.state, "restarts": p.restarts, "release": p.release}
            for p in processes]


def process_summary(processes: list[ProcessStatus]) -> str:
    """`web: 2 up, worker: 1 crashed`: each process type's replicas by state."""
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for p in processes:
        counts[p.type][p.state] += 1
    return ", ".join(f"{kind}: " + " ".join(f"{n} {state}" for state, n in sorted(c.items()))
                     for kind, c in sorted(counts.items())) or "no processes"


async def processes_of(platform: Platform, app: str) -> list[ProcessStatus] | None:
    """The app's processes, or None when the runtime cannot say right now."""
    if not platform.controller.has_runtime:
        return None
    try:
        return await platform.controller.runtime.ps(app)
    except Exception:  # a page shows "unknown" rather than failing because the runtime is slow or down
        log.warning("dashboard_ps_failed", app=app, exc_info=True)
        return None
