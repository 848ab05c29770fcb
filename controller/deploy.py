"""What a push to a deploy branch does: record a build, archive, build, release.

`gitreceiver` hands over a `PushedCommit` (it can read `teresa.yaml` and archive
the pushed tree, nothing more); everything after that is this module's.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from builder.job import BuildRequest
from controller import teresa_yaml
from controller.build_slots import BuildSlots
from controller.buildlog import BuildLog, LiveBuilds
from controller.events import Event, EventBus, EventKind
from controller.locks import ABANDONED, DeployLockLost, DeployLocks
from controller.runtime.base import BuildFailed, BuildTimedOut, LineSink, ReleasePhaseFailed, RolloutFailed, Runtime
from core import audit
from core import log as logging
from core import metrics
from core.commands import Actor
from core.layout import BuildKeys
from core.models import App, Build, utcnow
from core.services import Services
from core.storage import StorageError


class DeployHost(Protocol):
    """What a push's deploy needs of the controller (controller.Controller is one)."""

    build_slots: BuildSlots
    events: EventBus
    live_builds: LiveBuilds
    locks: DeployLocks

    @property
    def runtime(self) -> Runtime: ...

    async def config_vars(self, app: str) -> dict[str, str]: ...

    async def release_build(self, app: str, keys: BuildKeys, teresa_yaml_text: str, actor: Actor,
                            out: LineSink, *, phases: dict[str, float] | None = None) -> int: ...

log = logging.get(__name__)


class SourceRejected(Exception):
    """The pushed tree cannot be built as it is; the message says why and what to do."""


class PushedCommit(Protocol):
    """A commit received by git, not yet on its branch."""

    @property
    def ref(self) -> str: ...

    @property
    def received_seconds(self) -> float:
        """How long git took to receive the pack, from the session's start."""

    @property
    def commit(self) -> str: ...

    def read_teresa_yaml(self, limit: int) -> bytes | None:
        """The raw `teresa.yaml` at the root of the commit's tree (cut after `limit` + 1 bytes), or None."""

    def archive(self, destination: Path, stop: threading.Event) -> None:
        """Write the tree as a gzip'd tarball; raise SourceRejected when it cannot be built.

        Returns early (raising) once `stop` is set: the deploy was cancelled."""


class CannotStore(Exception):
    """The push could not be kept (storage or the data directory refused a write); the operator's log says why."""

    def __init__(self) -> None:
        super().__init__("The server cannot store your push right now; nothing was changed.")


# Exception type -> the short reason git shows: "! [remote rejected] main (build failed)".
REJECTIONS: list[tuple[type[Exception], str]] = [
    (teresa_yaml.TeresaYamlError, "invalid teresa.yaml"),
    (SourceRejected, "unsupported repository content"),
    (CannotStore, "server cannot store push"),
    (BuildFailed, "build failed"),
    (ReleasePhaseFailed, "release phase failed"),
    (RolloutFailed, "rollout failed"),
    (DeployLockLost, "deploy lock lost"),
]
# Exception type -> the build's status, when it is not plain "failed".
STATUSES: list[tuple[type[Exception], str]] = [
    (BuildTimedOut, "timed-out"),
    (DeployLockLost, ABANDONED),
]


@dataclass
class PushDeploy:
    """One push's deploy; `run` returns None on success, else the short rejection reason."""

    services: Services
    controller: DeployHost
    app: str
    actor: Actor
    pushed: PushedCommit
    out: LineSink
    phases: dict[str, float] = field(default_factory=dict)  # phase -> seconds, for the closing line

    async def run(self) -> str | None:
        """The push's audit record is written with its build row, and gets the build's outcome."""
        entry = audit.Entry(self.actor.who, "push", app=self.app,
                            details={"ref": self.pushed.ref, "commit": self.pushed.commit})
        async with audit.recording(self.services.db, entry):
            reason = await self._run(entry)
            entry.outcome, entry.reason = (audit.FAILED, reason) if reason else (audit.SUCCEEDED, "")
            return reason

    async def _run(self, entry: audit.Entry) -> str | None:
        started = time.monotonic()
        build_id = uuid.uuid4().hex
        keys = BuildKeys(self.app, build_id)

        def start(session: Session) -> int:
            self.controller.locks.fence(session, self.app)
            number = _start_build(session, self.app, build_id, self.actor, self.pushed)
            entry.details["build"] = number
            return number

        number = await self.services.db.run(start)
        buildlog = BuildLog(self.out, self.controller.live_builds.start(build_id))
        status, reason = "failed", "internal error"
        try:
            await buildlog(f"-----> Building {self.app} {self.pushed.ref.removeprefix('refs/heads/')} "
                           f"{self.pushed.commit[:7]} (build {number}, by {self.actor.email})")
            with self.controller.locks.guard(self.app):  # a lost lock stops the deploy, as DeployLockLost
                await self._build_and_release(keys, buildlog)
            status, reason = "succeeded", ""
            await buildlog(done_line(self.pushed.received_seconds + time.monotonic() - started,
                                     {"receive": self.pushed.received_seconds, **self.phases}))
            return None
        except asyncio.CancelledError:
            status, reason = "cancelled", "client disconnected"
            raise
        except Exception as exc:  # the boundary: every failure is reported as one line and a short reason
            reason = await self._report(exc, build_id, buildlog)
            status = next((kind for type_, kind in STATUSES if isinstance(exc, type_)), "failed")
            return reason
        finally:
            metrics.pushes_total.labels(outcome=status).inc()
            await asyncio.shield(self._finish(keys, status, reason, buildlog))

    async def _report(self, exc: Exception, build_id: str, out: LineSink) -> str:
        reason = next((short for kind, short in REJECTIONS if isinstance(exc, kind)), "")
        if reason:
            await out(f" !     {exc}")
            return reason
        reference = uuid.uuid4().hex[:12]
        log.exception("deploy_failed", app=self.app, build=build_id, reference=reference)
        await out(f" !     Internal error (reference {reference}); the operator can find it in the log.")
        return "internal error"

    async def _build_and_release(self, keys: BuildKeys, out: LineSink) -> None:
        raw = await asyncio.to_thread(self.pushed.read_teresa_yaml, teresa_yaml.MAX_BYTES)
        spec_text = teresa_yaml.decode(raw)
        await asyncio.to_thread(teresa_yaml.parse, spec_text or None)  # fail before building, not after
        await self._upload_source(keys.source)
        config = await self.controller.config_vars(self.app)
        request = BuildRequest(app=self.app, build_id=keys.build_id, source_key=keys.source, slug_key=keys.slug,
                               cache_key=keys.cache, config=config, buildpack_url=config.get("BUILDPACK_URL", ""),
                               timeout_seconds=self.services.settings.build_timeout)
        async with self.controller.build_slots.slot(out):
            await self._build(request, out)
        await self.controller.release_build(self.app, keys, spec_text, self.actor, out, phases=self.phases)

    async def _build(self, request: BuildRequest, out: LineSink) -> None:
        started = time.monotonic()
        try:
            await self.controller.runtime.build(request, out)
        except BaseException as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            metrics.builds_total.labels(app=self.app, outcome="cancelled" if cancelled else "failed").inc()
            if isinstance(exc, BuildFailed):
                self.controller.events.emit(Event(self.app, EventKind.BUILD_FAILED, f"build failed: {exc}",
                                                  who=self.actor.email))
            raise
        metrics.builds_total.labels(app=self.app, outcome="succeeded").inc()
        self.phases["build"] = time.monotonic() - started
        metrics.build_duration_seconds.observe(self.phases["build"])

    async def _upload_source(self, key: str) -> None:
        with tempfile.TemporaryDirectory(prefix="teresa-push-") as scratch:
            archive = Path(scratch) / "source.tgz"
            stop = threading.Event()
            try:
                await asyncio.to_thread(self.pushed.archive, archive, stop)
            finally:  # cancelled (the client went away): the archiving thread stops at its next piece
                stop.set()
            try:
                await asyncio.to_thread(self.services.storage.put_file, key, archive)
            except (OSError, StorageError) as exc:  # the detail names server paths: the operator's log only
                log.error("source_not_stored", app=self.app, key=key, error=str(exc))
                raise CannotStore() from exc

    async def _finish(self, keys: BuildKeys, status: str, reason: str, buildlog: BuildLog) -> None:
        try:
            await asyncio.to_thread(buildlog.save, self.services.storage, keys.log)
        except Exception:  # the build's outcome matters more than its stored log
            log.exception("build_log_not_saved", app=self.app, build=keys.build_id)

        def finish(session: Session) -> None:
            build = session.get(Build, keys.build_id)
            assert build is not None
            build.status, build.reason, build.finished_at = status, reason, utcnow()

        try:
            await self.services.db.run(finish)
        finally:
            await self.controller.live_builds.finish(keys.build_id)  # after the stored log and status: viewers reload
        log.info("build_finished", app=self.app, build=keys.build_id, status=status, reason=reason)


def _start_build(session: Session, app_name: str, build_id: str, actor: Actor, pushed: PushedCommit) -> int:
    app = session.scalar(select(App).where(App.name == app_name))
    assert app is not None, "deploy_push holds the deploy lock, which apps:destroy takes too"
    number = (session.scalar(select(func.max(Build.number)).where(Build.app_id == app.id)) or 0) + 1
    session.add(Build(id=build_id, app=app, number=number, user=actor.email, ref=pushed.ref, commit=pushed.commit,
                      status="running", reason=""))
    return number


def done_line(total: float, phases: dict[str, float]) -> str:
    """`-----> Done in 1.8s: receive 0.1s, build 0.9s, release 0.6s, rollout 0.2s`."""
    return f"-----> Done in {total:.1f}s: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in phases.items())
