"""The controller: every change to what runs becomes a release, rolled out the same way.

Push, config change, scale, restart and rollback each build a new release from
the current one, run the release phase when code or config changed, and ask
the runtime to roll it out. A failed release is recorded as failed and the
previous one keeps running.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable

from sqlalchemy.orm import Session

from builder.slugmeta import read_processes
from controller import releases
from controller.locks import DeployLock, DeployLocks
from controller.releases import ReleaseFields
from controller.runtime.base import LineSink, ReleasePhaseFailed, RolloutFailed
from controller.spec import ReleaseSpec
from core import log as logging
from core import metrics
from core.commands import Actor, CommandError
from core.models import App, ConfigVar, Release
from keys import access

log = logging.get(__name__)
Change = Callable[[ReleaseFields], ReleaseFields]
MAX_CONFIG_BYTES = 60 * 1024  # all of an app's config vars, as stored with each release


async def _quiet(_line: str) -> None:
    pass


class Controller:
    def __init__(self, services: Any):
        self.services = services
        self.locks = DeployLocks()

    @property
    def runtime(self) -> Any:
        if self.services.runtime is None:
            raise CommandError("this command needs the running server; start it with: teresa serve")
        return self.services.runtime

    def url(self, app: str) -> str:
        settings = self.services.settings
        port = settings.router_addr[1] if settings.runtime == "local" else 80
        return f"http://{app}.{settings.domain}" + ("" if port == 80 else f":{port}")

    # --- app lifecycle (called by the apps:* commands) --------------------------------------

    async def created(self, app: str) -> None:
        if self.services.runtime is not None:  # otherwise the first deploy creates what the app needs
            await self.runtime.create_app(app)

    async def destroyed(self, app: str) -> None:
        from gitreceiver import repos

        if self.services.runtime is not None:
            await self.runtime.destroy_app(app)
        await asyncio.to_thread(self.services.storage.delete_prefix, f"apps/{app}/")
        await asyncio.to_thread(repos.remove, self.services.settings.data_dir, app)

    async def info(self, app: str) -> dict[str, Any]:
        def load(session: Session) -> dict[str, Any]:
            record = access.find_app(session, app)
            current = releases.current_release(session, record)
            return {"release": f"v{current.version}" if current else "none (push to deploy)",
                    "domains": ", ".join(releases.domains_of(session, record)) or "none"}

        info = await self.services.db.run(load)
        info["url"] = self.url(app)
        return info

    async def config_vars(self, app: str) -> dict[str, str]:
        return await self.services.db.run(lambda s: releases.config_of(s, access.find_app(s, app)))

    # --- locking ------------------------------------------------------------------------------

    def lock(self, app: str, actor: Actor) -> DeployLock:
        lock, acquired = self.locks.acquire(app, actor.email)
        if not acquired:
            raise CommandError(f"{lock.describe()}; wait for it to finish, then try again.")
        return lock

    # --- releases -------------------------------------------------------------------------------

    async def release_build(self, app: str, build_id: str, slug_key: str, teresa_yaml_text: str, actor: Actor,
                            out: LineSink) -> int:
        """Release a fresh build (the caller holds the app's deploy lock)."""
        processes = await asyncio.to_thread(read_processes, self.services.storage, slug_key)

        def change(base: ReleaseFields) -> ReleaseFields:
            return ReleaseFields(build_id, slug_key, processes, base.config, base.formation, teresa_yaml_text)

        return await self.release(app, change, "push", actor, out, release_phase=True)

    async def release(self, app: str, change: Change, reason: str, actor: Actor, out: LineSink,
                      release_phase: bool) -> int:
        """Make, run and record a new release; returns its version. Raises the runtime's failures."""
        runtime = self.runtime  # without a running server, fail before recording anything
        started = time.monotonic()
        spec, previous = await self.services.db.run(lambda s: self._new_release(s, app, change, reason, actor))
        try:
            if release_phase and "release" in spec.processes:
                await runtime.release_phase(spec, out)
            rollout_started = time.monotonic()
            await runtime.deploy(spec, previous, out)
            metrics.rollout_duration_seconds.observe(time.monotonic() - rollout_started)
        except (ReleasePhaseFailed, RolloutFailed) as exc:
            metrics.releases_total.labels(outcome="failed").inc()
            await self.services.db.run(lambda s: self._finish(s, app, spec.version, "failed", str(exc)))
            raise
        except BaseException:
            metrics.releases_total.labels(outcome="interrupted").inc()
            await asyncio.shield(self.services.db.run(
                lambda s: self._finish(s, app, spec.version, "failed", "interrupted")))
            raise
        metrics.releases_total.labels(outcome="succeeded").inc()
        await self.services.db.run(lambda s: self._finish(s, app, spec.version, "succeeded", ""))
        log.info("released", app=app, release=spec.label, reason=reason, seconds=round(time.monotonic() - started, 2))
        await out(f"-----> Released {spec.label}: {self.url(app)}")
        return spec.version

    def _new_release(self, session: Session, app_name: str, change: Change, reason: str,
                     actor: Actor) -> tuple[ReleaseSpec, ReleaseSpec | None]:
        app = access.find_app(session, app_name)
        current = releases.current_release(session, app)
        domains = releases.domains_of(session, app)
        if current is None:
            base = ReleaseFields("", "", {}, releases.config_of(session, app), json.loads(app.formation), "")
        else:
            base = releases.fields_of(current)
        fields = change(ReleaseFields(base.build_id, base.slug_key, base.processes, base.config,
                                      json.loads(app.formation), base.teresa_yaml))
        if not fields.slug_key:
            raise CommandError(f"{app_name} has no build yet; push to deploy it first.")
        version = releases.next_version(session, app)
        session.add(Release(
            app_id=app.id, version=version, build_id=fields.build_id, slug_key=fields.slug_key,
            processes=json.dumps(fields.processes), config=json.dumps(fields.config),
            formation=json.dumps(fields.formation), teresa_yaml=fields.teresa_yaml, reason=reason,
            user=actor.email, status="deploying", error="",
        ))
        previous = releases.record_spec(app, current, domains) if current else None
        return releases.to_spec(app, version, fields, reason, domains), previous

    def _finish(self, session: Session, app_name: str, version: int, status: str, error: str) -> None:
        app = access.find_app(session, app_name)
        release = releases.release_by_version(session, app, version)
        release.status, release.error = status, error[:2000]
        if status == "succeeded":
            app.current_release = version

    async def current_spec(self, app: str) -> ReleaseSpec | None:
        def load(session: Session) -> ReleaseSpec | None:
            record = access.find_app(session, app)
            current = releases.current_release(session, record)
            return releases.record_spec(record, current, releases.domains_of(session, record)) if current else None

        return await self.services.db.run(load)

    async def locked_release(self, app: str, change: Change, reason: str, actor: Actor, out: LineSink,
                             release_phase: bool) -> int:
        lock = self.lock(app, actor)
        try:
            return await self.release(app, change, reason, actor, out, release_phase)
        finally:
            self.locks.release(lock)

    # --- config ---------------------------------------------------------------------------------

    async def set_config(self, app: str, updates: dict[str, str], removals: list[str], actor: Actor,
                         out: LineSink) -> int | None:
        """Release the new config vars if the app has a build; they are stored once that succeeded."""
        lock = self.lock(app, actor)
        try:
            config, has_build = await self.services.db.run(lambda s: self._new_config(s, app, updates, removals))
            version = None
            if has_build:
                def change(base: ReleaseFields) -> ReleaseFields:
                    return ReleaseFields(base.build_id, base.slug_key, base.processes, config, base.formation,
                                         base.teresa_yaml)

                reason = "config: " + " ".join([f"set {', '.join(sorted(updates))}"] * bool(updates) +
                                               [f"unset {', '.join(sorted(removals))}"] * bool(removals))
                version = await self.release(app, change, reason, actor, out, release_phase=True)
            await self.services.db.run(lambda s: self._save_config(s, app, config))
            return version
        finally:
            self.locks.release(lock)

    def _new_config(self, session: Session, app_name: str, updates: dict[str, str],
                    removals: list[str]) -> tuple[dict[str, str], bool]:
        app = access.find_app(session, app_name)
        config = releases.config_of(session, app)
        missing = [name for name in removals if name not in config]
        if missing:
            raise CommandError(f"{app_name} has no config var {missing[0]}; run: config {app_name}")
        config = {k: v for k, v in config.items() if k not in removals} | updates
        if len(json.dumps(config)) > MAX_CONFIG_BYTES:
            raise CommandError(f"{app_name}'s config vars would take more than {MAX_CONFIG_BYTES} bytes in all; "
                               "keep large data out of config vars.")
        return config, app.current_release is not None

    def _save_config(self, session: Session, app_name: str, config: dict[str, str]) -> None:
        app = access.find_app(session, app_name)
        existing = {v.name: v for v in session.query(ConfigVar).filter(ConfigVar.app_id == app.id)}
        for name, var in existing.items():
            if name not in config:
                session.delete(var)
            else:
                var.value = config[name]
        session.add_all(ConfigVar(app_id=app.id, name=k, value=v) for k, v in config.items() if k not in existing)

    # --- scale, restart, rollback -----------------------------------------------------------------

    async def scale(self, app: str, counts: dict[str, int], actor: Actor, out: LineSink) -> int:
        current = await self.current_spec(app)
        if current is None:
            raise CommandError(f"{app} has no release yet; push to deploy it first.")
        unknown = sorted(set(counts) - set(current.long_running_types))
        if unknown:
            known = ", ".join(current.long_running_types) or "none"
            raise CommandError(f"{app} has no process type '{unknown[0]}'; its types are: {known}.")

        def change(base: ReleaseFields) -> ReleaseFields:
            formation = base.formation | counts
            return ReleaseFields(base.build_id, base.slug_key, base.processes, base.config, formation,
                                 base.teresa_yaml)

        reason = "scale " + " ".join(f"{t}={n}" for t, n in sorted(counts.items()))
        lock = self.lock(app, actor)
        try:
            version = await self.release(app, change, reason, actor, out, release_phase=False)
            await self.services.db.run(lambda s: self._store_formation(s, app, counts))
            return version
        finally:
            self.locks.release(lock)

    def _store_formation(self, session: Session, app_name: str, counts: dict[str, int]) -> None:
        app = access.find_app(session, app_name)
        app.formation = json.dumps(json.loads(app.formation) | counts, sort_keys=True)

    async def restart(self, app: str, process_type: str | None, actor: Actor, out: LineSink) -> int:
        current = await self.current_spec(app)
        if current is None:
            raise CommandError(f"{app} has no release yet; push to deploy it first.")
        if process_type and process_type not in current.long_running_types:
            known = ", ".join(current.long_running_types) or "none"
            raise CommandError(f"{app} has no process type '{process_type}'; its types are: {known}.")
        reason = f"restart {process_type}" if process_type else "restart"  # the runtime restarts all on "restart"
        version = await self.locked_release(app, lambda base: base, reason, actor, out, release_phase=False)
        if process_type:
            await self.runtime.restart(app, process_type)
        return version

    async def rollback(self, app: str, version: int | None, actor: Actor, out: LineSink) -> int:
        def target(session: Session) -> Release:
            record = access.find_app(session, app)
            if record.current_release is None:
                raise CommandError(f"{app} has no release yet; push to deploy it first.")
            wanted = version
            if wanted is None:
                earlier = [r for r in session.query(Release).filter(
                    Release.app_id == record.id, Release.status == "succeeded",
                    Release.version < record.current_release).order_by(Release.version.desc()).limit(1)]
                if not earlier:
                    raise CommandError(f"{app} has no earlier release to roll back to.")
                return earlier[0]
            found = releases.release_by_version(session, record, wanted)
            if found is None or found.status != "succeeded":
                raise CommandError(f"{app} has no successful release v{wanted}; run: releases {app}")
            return found

        old = await self.services.db.run(target)
        old_fields = releases.fields_of(old)

        def change(base: ReleaseFields) -> ReleaseFields:
            return ReleaseFields(old_fields.build_id, old_fields.slug_key, old_fields.processes, old_fields.config,
                                 base.formation, old_fields.teresa_yaml)

        lock = self.lock(app, actor)
        try:
            new_version = await self.release(app, change, f"rollback to v{old.version}", actor, out,
                                             release_phase=True)
            await self.services.db.run(lambda s: self._save_config(s, app, old_fields.config))
            return new_version
        finally:
            self.locks.release(lock)
