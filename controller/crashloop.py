"""Crash-loop detection, the same on both runtimes: restarts counted from `Runtime.ps` over a window.

Every crashloop_interval seconds the detector asks the runtime for each
released app's processes (the local supervisor's restart counts; on Kubernetes
a pod list and its containers' restartCount) and counts the restarts since the
last look, per process type. `crashloop_restarts` of them within
`crashloop_window` seconds start an episode: one CRASH event and
teresa_crashlooping_processes{app} up. The episode ends, with one
CRASH_RECOVERED event, once a whole window passes without a restart; a process
type that stops running (scaled to zero, app destroyed) ends it silently.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.events import Event, EventBus, EventKind
from controller.runtime.base import ProcessStatus, Runtime
from core import log as logging
from core import metrics
from core.config import NotificationSettings
from core.db import Database
from core.models import App

log = logging.get(__name__)


@dataclass
class _Watch:
    """One app's process type: restarts seen recently, and whether an episode is on."""
    seen: dict[str, int] = field(default_factory=dict)  # replica -> restarts at the last look
    restarts: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)  # (when, how many)
    episode: bool = False


class CrashLoopDetector:
    def __init__(self, runtime: Runtime, db: Database, events: EventBus, settings: NotificationSettings, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.runtime = runtime
        self.db = db
        self.events = events
        self.settings = settings
        self.clock = clock
        self._watches: dict[tuple[str, str], _Watch] = {}

    async def run(self) -> None:
        """Until cancelled: look, then wait crashloop_interval."""
        while True:
            try:
                await self.look()
            except Exception:  # the runtime or the database hiccuped; the next look may do
                log.exception("crashloop_look_failed")
            await asyncio.sleep(self.settings.crashloop_interval)

    async def look(self) -> None:
        apps = await self.db.run(_released_apps)
        now = self.clock()
        live: set[tuple[str, str]] = set()
        for app in apps:
            by_type: dict[str, list[ProcessStatus]] = collections.defaultdict(list)
            for process in await self.runtime.ps(app):
                by_type[process.type].append(process)
            for process_type, processes in by_type.items():
                live.add((app, process_type))
                self._observe(app, process_type, processes, now)
        for key in [k for k in self._watches if k not in live]:  # no longer runs: no longer crashing
            self._end(key, announce=False)

    def _observe(self, app: str, process_type: str, processes: list[ProcessStatus], now: float) -> None:
        watch = self._watches.setdefault((app, process_type), _Watch())
        first_look = not watch.seen and not watch.restarts
        new = sum(max(0, p.restarts - watch.seen.get(p.replica, 0)) for p in processes)
        watch.seen = {p.replica: p.restarts for p in processes}
        if new and not first_look:  # restarts from before the detector started are history
            watch.restarts.append((now, new))
        while watch.restarts and watch.restarts[0][0] < now - self.settings.crashloop_window:
            watch.restarts.popleft()
        count = sum(n for _, n in watch.restarts)
        if not watch.episode and count >= self.settings.crashloop_restarts:
            watch.episode = True
            self._gauge(app)
            states = ", ".join(f"{p.replica} {p.state}" for p in processes)
            reason = (f"{process_type} is crash-looping: {count} restarts in the last "
                      f"{self.settings.crashloop_window:g}s ({states})")
            log.warning("crash_loop", app=app, process_type=process_type, restarts=count)
            self.events.emit(Event(app, EventKind.CRASH, reason, release=max(p.release for p in processes)))
        elif watch.episode and count == 0:
            self._end((app, process_type), announce=True, release=max(p.release for p in processes))

    def _end(self, key: tuple[str, str], *, announce: bool, release: int | None = None) -> None:
        watch = self._watches.pop(key) if not announce else self._watches[key]
        if not watch.episode:
            return
        watch.episode = False
        app, process_type = key
        self._gauge(app)
        if announce:
            reason = f"{process_type} has not restarted for {self.settings.crashloop_window:g}s"
            self.events.emit(Event(app, EventKind.CRASH_RECOVERED, reason, release=release))

    def _gauge(self, app: str) -> None:
        looping = sum(1 for (a, _), w in self._watches.items() if a == app and w.episode)
        if looping:
            metrics.crashlooping_processes.labels(app=app).set(looping)
        else:
            try:
                metrics.crashlooping_processes.remove(app)
            except KeyError:
                pass


def _released_apps(session: Session) -> list[str]:
    return list(session.scalars(select(App.name).where(App.current_release.is_not(None)).order_by(App.name)))
