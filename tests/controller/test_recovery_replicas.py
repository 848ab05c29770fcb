"""Crash recovery when replicas share the database: another live replica's deploys are left alone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.recovery import INTERRUPTED, mark_interrupted
from core import leases
from core.db import Database
from core.models import App, Build, Lease, Release, Team


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.upgrade()
    yield database
    database.dispose()


def running(session: Session, app: str, replica: str | None, expires_in: float) -> None:
    """An app with a running build and a deploying release, and (unless `replica` is None) its deploy lease."""
    team = session.scalar(select(Team).where(Team.name == "web"))
    if team is None:
        team = Team(name="web")
        session.add(team)
        session.flush()
    record = App(name=app, team_id=team.id, formation={})
    session.add(record)
    session.flush()
    session.add(Build(id=f"b-{app}", app_id=record.id, number=1, user="dev@example.com", ref="refs/heads/main",
                      commit="c" * 40, status="running", reason=""))
    session.add(Release(app_id=record.id, version=1, build_id=f"b-{app}", slug_key="", processes={}, config={},
                        formation={}, reason="push", user="dev@example.com", status="deploying"))
    if replica is not None:
        now = leases.utcnow()
        session.add(Lease(name=f"deploy:{app}", holder="dev@example.com", replica=replica, token="t" * 32,
                          since=now - timedelta(seconds=60), expires_at=now + timedelta(seconds=expires_in)))


def test_only_work_no_live_replica_holds_is_marked_interrupted(db: Database) -> None:
    def setup(session: Session) -> None:
        running(session, "shop", "replica-b", 30)  # B is alive and deploying: not ours to mark
        running(session, "cart", "replica-a", 30)  # held under our own name: the process we replace
        running(session, "blog", "replica-b", -5)  # B stopped renewing: its lease expired
        running(session, "news", None, 0)  # no lease at all (a single server's crash)

    db.transaction(setup)
    assert db.transaction(lambda s: mark_interrupted(s, "replica-a")) == (3, 3)

    def state(session: Session) -> dict[str, tuple[str, str]]:
        names = {a.id: a.name for a in session.scalars(select(App))}
        builds = {names[b.app_id]: b.status for b in session.scalars(select(Build))}
        deploys = {names[r.app_id]: r.status for r in session.scalars(select(Release))}
        return {app: (builds[app], deploys[app]) for app in names.values()}

    assert db.transaction(state) == {"shop": ("running", "deploying"), "cart": (INTERRUPTED, INTERRUPTED),
                                     "blog": (INTERRUPTED, INTERRUPTED), "news": (INTERRUPTED, INTERRUPTED)}
    held = db.transaction(lambda s: sorted((l.name, l.replica) for l in s.scalars(select(Lease))))
    assert held == [("deploy:blog", "replica-b"), ("deploy:shop", "replica-b")]  # ours released at once
    assert leases.acquire(db, "deploy:cart", "dev@example.com", "replica-a", 30)  # the next push need not wait
