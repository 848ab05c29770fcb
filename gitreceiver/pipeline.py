"""What a push to a deploy branch does: record, archive, build, hand to the controller."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controller import teresa_yaml
from controller.runtime.base import BuildFailed, BuildRequest, LineSink, ReleasePhaseFailed, RolloutFailed
from core import log as logging
from core import metrics
from core.commands import Actor
from core.models import App, Build, utcnow
from core.services import Services
from gitreceiver.archive import ArchiveError, archive_to_file
from gitreceiver.buildlog import BuildLog
from controller.locks import DeployLock

log = logging.get(__name__)

# Exception type -> the short reason git shows: "! [remote rejected] main (build failed)".
REJECTIONS: list[tuple[type[Exception], str]] = [
    (teresa_yaml.TeresaYamlError, "invalid teresa.yaml"),
    (ArchiveError, "unsupported repository content"),
    (BuildFailed, "build failed"),
    (ReleasePhaseFailed, "release phase failed"),
    (RolloutFailed, "rollout failed"),
]


def build_keys(app: str, build_id: str) -> dict[str, str]:
    prefix = f"apps/{app}/builds/{build_id}"
    return {"source": f"{prefix}/source.tgz", "slug": f"{prefix}/slug.tgz", "log": f"{prefix}/build.log",
            "cache": f"apps/{app}/cache/cache.tgz"}


class PushPipeline:
    def __init__(self, services: Services):
        self.services = services

    def lock(self, app: str, actor: Actor) -> tuple[DeployLock, bool]:
        return self.services.controller.locks.acquire(app, actor.email)

    def unlock(self, lock: DeployLock) -> None:
        self.services.controller.locks.release(lock)

    async def deploy(self, app: str, actor: Actor, ref: str, commit: str, repo: Path, out: LineSink) -> str | None:
        """Build and release `commit`; returns None on success, else the short rejection reason."""
        build_id = uuid.uuid4().hex
        number = await self.services.db.run(lambda s: _start_build(s, app, build_id, actor, ref, commit))
        buildlog = BuildLog(out)
        status, reason = "failed", "internal error"
        try:
            await buildlog(f"-----> Building {app} {ref.removeprefix('refs/heads/')} {commit[:7]} "
                           f"(build {number}, by {actor.email})")
            await self._build_and_release(app, build_id, commit, repo, actor, buildlog)
            status, reason = "succeeded", ""
            return None
        except asyncio.CancelledError:
            status, reason = "cancelled", "client disconnected"
            raise
        except Exception as exc:  # every failure is reported as one line and a short reason
            reason = next((short for kind, short in REJECTIONS if isinstance(exc, kind)), "")
            if reason:
                await buildlog(f" !     {exc}")
            else:
                reference = uuid.uuid4().hex[:12]
                log.exception("deploy_failed", app=app, build=build_id, reference=reference)
                await buildlog(f" !     Internal error (reference {reference}); the operator can find it in the log.")
                reason = "internal error"
            if isinstance(exc, BuildFailed) and "timed out" in str(exc):
                status = "timed-out"
            return reason
        finally:
            metrics.pushes_total.labels(outcome=status).inc()
            await asyncio.shield(self._finish(app, build_id, status, reason, buildlog))

    async def _build_and_release(self, app: str, build_id: str, commit: str, repo: Path, actor: Actor,
                                 out: LineSink) -> None:
        settings = self.services.settings
        raw = await asyncio.to_thread(_read_file, repo, commit, b"teresa.yaml")
        try:
            spec_text = raw.decode("utf-8") if raw else ""
        except UnicodeDecodeError:
            raise teresa_yaml.TeresaYamlError("teresa.yaml is not UTF-8 text; save it as UTF-8.") from None
        teresa_yaml.parse(spec_text or None)  # fail before building, not after
        keys = build_keys(app, build_id)
        await self._upload_source(repo, commit, keys["source"])
        config = await self.services.controller.config_vars(app)
        request = BuildRequest(app=app, build_id=build_id, source_key=keys["source"], slug_key=keys["slug"],
                               cache_key=keys["cache"], config=config,
                               buildpack_url=config.get("BUILDPACK_URL", ""), timeout_seconds=settings.build_timeout)
        started = time.monotonic()
        try:
            await self.services.runtime.build(request, out)
        except BaseException as exc:
            metrics.builds_total.labels(outcome="cancelled" if isinstance(exc, asyncio.CancelledError) else "failed").inc()
            raise
        metrics.builds_total.labels(outcome="succeeded").inc()
        metrics.build_duration_seconds.observe(time.monotonic() - started)
        await self.services.controller.release_build(app, build_id, keys["slug"], spec_text, actor, out)

    async def _upload_source(self, repo: Path, commit: str, key: str) -> None:
        with tempfile.TemporaryDirectory(prefix="teresa-push-") as scratch:
            archive = Path(scratch) / "source.tgz"
            await asyncio.to_thread(archive_to_file, repo, commit.encode(), archive)
            await asyncio.to_thread(self.services.storage.put_file, key, archive)

    async def _finish(self, app: str, build_id: str, status: str, reason: str, buildlog: BuildLog) -> None:
        try:
            await asyncio.to_thread(buildlog.save, self.services.storage, build_keys(app, build_id)["log"])
        except Exception:
            log.exception("build_log_not_saved", app=app, build=build_id)

        def finish(session: Session) -> None:
            build = session.get(Build, build_id)
            build.status, build.reason, build.finished_at = status, reason, utcnow()

        await self.services.db.run(finish)
        log.info("build_finished", app=app, build=build_id, status=status, reason=reason)


def _start_build(session: Session, app_name: str, build_id: str, actor: Actor, ref: str, commit: str) -> int:
    app = session.scalar(select(App).where(App.name == app_name))
    number = (session.scalar(select(func.max(Build.number)).where(Build.app_id == app.id)) or 0) + 1
    session.add(Build(id=build_id, app=app, number=number, user=actor.email, ref=ref, commit=commit,
                      status="running", reason=""))
    return number


def _read_file(repo_path: Path, commit: str, name: bytes) -> bytes | None:
    from dulwich.repo import Repo

    with Repo(str(repo_path)) as repo:
        tree = repo[repo[commit.encode()].tree]
        if name not in tree:
            return None
        _mode, sha = tree[name]
        return repo[sha].as_raw_string()
