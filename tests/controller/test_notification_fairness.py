"""Delivery is fair between teams (found in review: sixteen slow receivers of one team held every delivery slot,
and another team's delivery waited for them)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Callable

import pytest
from aiohttp import web
from sqlalchemy.orm import Session

from controller.events import Event, EventKind
from controller.notifications import queue
from controller.notifications.notifier import CONCURRENCY, TEAM_CONCURRENCY, Notifier
from core.models import App, Team
from core.services import Services
from tests.controller.conftest import Serve


class Gate:
    """Answers 204, holding requests to /slow/… until `open` is set; notes each request's path on arrival."""

    def __init__(self) -> None:
        self.open, self.paths, self.changed = asyncio.Event(), list[str](), asyncio.Condition()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        async with self.changed:
            self.paths.append(request.path)
            self.changed.notify_all()
        if request.path.startswith("/slow/"):
            await self.open.wait()
        return web.Response(status=204)

    async def until(self, condition: Callable[[list[str]], bool]) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: condition(self.paths)), 10)


def slow(paths: list[str]) -> list[str]:
    return [p for p in paths if p.startswith("/slow/")]


def targets(services: Services, url: str) -> None:
    """Team slow: a receiver per slot, each set on the team; team quick: one, set on its app."""
    def add(session: Session) -> None:
        slow_team, quick_team = Team(name="slow"), Team(name="quick")
        quick_app = App(name="quickapp", team=quick_team)
        session.add_all([slow_team, quick_team, App(name="slowapp", team=slow_team), quick_app])
        session.flush()
        for n in range(CONCURRENCY):
            queue.add_target(session, team_id=slow_team.id, app_id=None, url=f"{url}/slow/{n}", events=[],
                             created_by="dev@example.com")
        queue.add_target(session, team_id=None, app_id=quick_app.id, url=f"{url}/quick", events=[],
                         created_by="dev@example.com")
    services.db.transaction(add)


@pytest.mark.asyncio
async def test_a_team_with_slow_receivers_leaves_delivery_slots_to_another_team(services: Services,
                                                                                  serve: Serve) -> None:
    gate = Gate()
    targets(services, await serve(gate))
    notifier = Notifier(services)
    notifier.note(Event("slowapp", EventKind.DEPLOY, "push"))  # queued first: its deliveries are due first
    notifier.note(Event("quickapp", EventKind.DEPLOY, "push"))
    worker = asyncio.create_task(notifier.run())
    try:
        await gate.until(lambda paths: "/quick" in paths and len(slow(paths)) >= TEAM_CONCURRENCY)
        assert not gate.open.is_set()  # went through while the slow team's deliveries were held
        assert len(slow(gate.paths)) == TEAM_CONCURRENCY  # no more of them were started meanwhile
        gate.open.set()
        await gate.until(lambda paths: len(set(slow(paths))) == CONCURRENCY)  # the rest follow, a few at a time
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
