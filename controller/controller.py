"""The controller: every change to what runs becomes a release, rolled out the same way.

Push, config change, scale, limits, autoscale, restart and rollback each make a
new release from the current one (`dataclasses.replace` of its fields), run the
release phase when code or config changed, and ask the runtime to roll it out.
The app's settings (config vars, formation, limits, autoscale) are stored with
the release's success, in the same transaction; a failed release is recorded as
failed and the previous one keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import time
from typing import Any, AsyncIterator, Callable

from sqlalchemy.orm import Session

from builder.slugmeta import read_processes, slug_digest
from controller import releases
from controller.build_slots import BuildSlots
from controller.buildlog import LiveBuilds
from controller.deploy import PushDeploy, PushedCommit
from controller.events import Event, EventBus, EventKind
from controller.locks import DeployLock, DeployLocks
from controller.observe import release_phase_running
from controller.releases import ReleaseFields
from controller.runtime import declared_capabilities
from controller.runtime.base import Capability, LineSink, ReleasePhaseFailed, RolloutFailed, Runtime
from controller.spec import ReleaseSpec
from core import layout
from core import log as logging
from core import metrics, repos
from core.commands import Actor, CommandError
from core.layout import BuildKeys
from core.models import Release
from core.services import Services
from keys import access

log = logging.get(__name__)
Change = Callable[[ReleaseFields], ReleaseFields]
MAX_CONFIG_BYTES = 60 * 1024  # all of an app's config vars, as stored with each release


class Controller:
    def __init__(self, services: Services, runtime: Runtime | None):
        self.services = services
        self._runtime = runtime
        settings = services.settings
        self.locks = DeployLocks(services.db, settings.replica_name, settings.deploy_lease_seconds)
        self.build_slots = BuildSlots(services.settings.max_concurrent_builds)
        self.events = EventBus()  # release and build outcomes, crash loops: for metrics and notifications
        self.live_builds = LiveBuilds()  # running builds' lines, for the dashboard

    @property
    def runtime(self) -> Runtime:
        """The one way to the runtime; without a running server there is none."""
        if self._runtime is None:
            raise CommandError("this command needs the running server; start it with: teresa serve")
        return self._runtime

    @property
    def has_runtime(self) -> bool:
        return self._runtime is not None

    @functools.cached_property
    def capabilities(self) -> Capability:
        """The runtime's; without a running server, those of the runtime the settings name."""
        return self._runtime.capabilities if self._runtime is not None else declared_capabilities(self.services.settings)

    def url(self, app: str) -> str:
        settings = self.services.settings
        port = settings.router_addr[1] if Capability.ROUTER in self.capabilities else 80
        return f"http://{app}.{settings.domain}" + ("" if port == 80 else f":{port}")

    # --- locking ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def deploy_lock(self, app: str, actor: Actor) -> AsyncIterator[DeployLock]:
        """Held by every path that changes what runs; raises DeployInProgress naming the holder."""
        async with self.locks.hold(app, actor.email) as lock:
            yield lock

    # --- app lifecycle (called by the apps:* commands) --------------------------------------

    async def created(self, app: str, actor: Actor) -> None:
        if self._runtime is not None:  # otherwise the first deploy creates what the app needs
            async with self.deploy_lock(app, actor):  # a push may begin as soon as the app exists
                await self._runtime.create_app(app)

    async def destroy(self, app: str, actor: Actor, remove_record: Callable[[Session], None]) -> None:
        """Stop and forget the app: runtime objects, stored objects, repository, then its records."""
        async with self.deploy_lock(app, actor):
            if self._runtime is not None:
                await self._runtime.destroy_app(app)
            await asyncio.to_thread(self.services.storage.delete_prefix, layout.app_prefix(app))
            await asyncio.to_thread(repos.remove, self.services.settings.data_dir, app)
            await self.services.db.run(remove_record)

    async def change_domains(self, app: str, actor: Actor, change: Callable[[Session], None]) -> None:
        """Change the app's domains or TLS Secret (`change`, in one transaction) and route them, under the deploy
        lock: a rollout in flight would otherwise end by routing the list it started with."""
        def changed(session: Session) -> tuple[list[str], str]:
            self.locks.fence(session, app)
            change(session)
            found = access.find_app(session, app)
            return list(releases.domains_of(session, found)), found.tls_secret

        async with self.deploy_lock(app, actor):
            hosts, tls_secret = await self.services.db.run(changed)
            if self._runtime is not None:  # otherwise the next release carries them
                await self._runtime.set_domains(app, hosts, tls_secret=tls_secret)

    async def info(self, app: str) -> dict[str, str]:
        def load(session: Session) -> dict[str, str]:
            record = access.find_app(session, app)
            current = releases.current_release(session, record)
            return {"release": f"v{current.version}" if current else "none (push to deploy)",
                    "domains": ", ".join(releases.domains_of(session, record)) or "none"}

        info = await self.services.db.run(load)
        info["url"] = self.url(app)
        return info

    async def config_vars(self, app: str) -> dict[str, str]:
        return await self.services.db.run(lambda s: releases.config_of(s, access.find_app(s, app)))

    # --- pushes -------------------------------------------------------------------------------

    async def deploy_push(self, app: str, actor: Actor, pushed: PushedCommit, out: LineSink) -> str | None:
        """Build and release a pushed commit (the caller holds the deploy lock).

        Returns None on success, else the short reason git shows beside the rejected ref.
        """
        assert self.locks.holds(app), "deploy_push needs the app's deploy lock"
        return await PushDeploy(self.services, self, app, actor, pushed, out).run()

    async def release_build(self, app: str, keys: BuildKeys, teresa_yaml_text: str, actor: Actor,
                            out: LineSink, *, phases: dict[str, float] | None = None) -> int:
        """Release a fresh build (the caller holds the app's deploy lock)."""
        processes = await asyncio.to_thread(read_processes, self.services.storage, keys.slug)
        # The build's grants outlive it (a presigned PUT of the slug): what is fetched later must be what is here now.
        digest = await asyncio.to_thread(slug_digest, self.services.storage, keys.slug)

        def change(base: ReleaseFields) -> ReleaseFields:
            return dataclasses.replace(base, build_id=keys.build_id, slug_key=keys.slug, slug_digest=digest,
                                       processes=processes, teresa_yaml=teresa_yaml_text)

        return await self.release(app, change, "push", actor, out, release_phase=True, phases=phases)

    # --- releases -------------------------------------------------------------------------------

    async def release(self, app: str, change: Change, reason: str, actor: Actor, out: LineSink, *,
                      release_phase: bool, restart: bool = False, phases: dict[str, float] | None = None) -> int:
        """Make, run and record a new release (the caller holds the lock); returns its version.

        `phases` gets the seconds the release phase and the rollout took."""
        phases = {} if phases is None else phases
        runtime = self.runtime  # without a running server, fail before recording anything
        started = time.monotonic()
        spec, previous, fields = await self.services.db.run(
            lambda s: self._new_release(s, app, change, reason, actor))
        try:
            if release_phase and "release" in spec.processes:
                with release_phase_running(app):
                    await runtime.release_phase(spec, out)
            rollout_started = time.monotonic()
            phases["release"] = rollout_started - started
            await runtime.deploy(spec, previous, out, restart=restart)
            phases["rollout"] = time.monotonic() - rollout_started
            metrics.rollout_duration_seconds.observe(phases["rollout"])
        except (ReleasePhaseFailed, RolloutFailed) as exc:
            metrics.releases_total.labels(app=app, outcome="failed").inc()
            if isinstance(exc, RolloutFailed):
                metrics.rollouts_undone_total.labels(app=app).inc()
            error = str(exc)
            await self.services.db.run(lambda s: self._finish(s, app, spec.version, None, error))
            self.events.emit(Event(app, EventKind.RELEASE_FAILED, error, who=actor.email, release=spec.version))
            raise
        except BaseException:
            metrics.releases_total.labels(app=app, outcome="interrupted").inc()
            await asyncio.shield(self.services.db.run(
                lambda s: self._finish(s, app, spec.version, None, "interrupted")))
            raise
        metrics.releases_total.labels(app=app, outcome="succeeded").inc()
        await self.services.db.run(lambda s: self._finish(s, app, spec.version, fields, ""))
        self.events.emit(Event(app, EventKind.DEPLOY, reason, who=actor.email, release=spec.version))
        log.info("released", app=app, release=spec.label, reason=reason, seconds=round(time.monotonic() - started, 2))
        await out(f"-----> Released {spec.label}: {self.url(app)}")
        return spec.version

    def _new_release(self, session: Session, app_name: str, change: Change, reason: str,
                     actor: Actor) -> tuple[ReleaseSpec, ReleaseSpec | None, ReleaseFields]:
        self.locks.fence(session, app_name)
        app = access.find_app(session, app_name)
        base = releases.current_fields(session, app)
        fields = change(base)
        if not fields.slug_key:
            raise CommandError(f"{app_name} has no build yet; push to deploy it first.")
        version = releases.next_version(session, app)
        session.add(Release(
            app_id=app.id, version=version, build_id=fields.build_id, slug_key=fields.slug_key,
            slug_digest=fields.slug_digest,
            processes=fields.processes, config=fields.config, formation=fields.formation,
            teresa_yaml=fields.teresa_yaml, reason=reason, user=actor.email, status="deploying", error="",
        ))
        domains = releases.domains_of(session, app)
        previous = releases.to_spec(app, app.current_release, base, "", domains) if app.current_release else None
        return releases.to_spec(app, version, fields, reason, domains), previous, fields

    def _finish(self, session: Session, app_name: str, version: int, fields: ReleaseFields | None,
                error: str) -> None:
        """Record the outcome; with `fields` (success) the release becomes current with its settings."""
        self.locks.fence(session, app_name)
        app = access.find_app(session, app_name)
        release = releases.release_by_version(session, app, version)
        assert release is not None
        release.status, release.error = ("succeeded", "") if fields else ("failed", error[:2000])
        if fields is not None:
            app.current_release = version
            releases.store_settings(session, app, fields)

    async def current_spec(self, app: str) -> ReleaseSpec | None:
        def load(session: Session) -> ReleaseSpec | None:
            record = access.find_app(session, app)
            current = releases.current_release(session, record)
            return releases.record_spec(session, record, current) if current else None

        return await self.services.db.run(load)

    async def update(self, app: str, change: Change, reason: str, actor: Actor, out: LineSink, *,
                     release_phase: bool, restart: bool = False) -> int | None:
        """Change the app's settings: a new release when it runs, else stored for its first push."""
        async with self.deploy_lock(app, actor):
            if await self.services.db.run(lambda s: access.find_app(s, app).current_release is None):
                await self.services.db.run(lambda s: self._store_unreleased(s, app, change))
                return None
            return await self.release(app, change, reason, actor, out, release_phase=release_phase,
                                      restart=restart)

    def _store_unreleased(self, session: Session, app_name: str, change: Change) -> None:
        self.locks.fence(session, app_name)
        app = access.find_app(session, app_name)
        releases.store_settings(session, app, change(releases.current_fields(session, app)))

    # --- config ---------------------------------------------------------------------------------

    async def set_config(self, app: str, updates: dict[str, str], removals: list[str], actor: Actor,
                         out: LineSink) -> int | None:
        """Release the new config vars if the app has a build; they are stored once that succeeded."""
        current = await self.config_vars(app)
        missing = [name for name in removals if name not in current]
        if missing:
            raise CommandError(f"{app} has no config var {missing[0]}; run: config {app}")

        def change(base: ReleaseFields) -> ReleaseFields:
            config = {k: v for k, v in base.config.items() if k not in removals} | updates
            if len(json.dumps(config)) > MAX_CONFIG_BYTES:
                raise CommandError(f"{app}'s config vars would take more than {MAX_CONFIG_BYTES} bytes in all; "
                                   "keep large data out of config vars.")
            return dataclasses.replace(base, config=config)

        reason = "config: " + " ".join([f"set {', '.join(sorted(updates))}"] * bool(updates) +
                                       [f"unset {', '.join(sorted(removals))}"] * bool(removals))
        return await self.update(app, change, reason, actor, out, release_phase=True)

    # --- scale, limits, autoscale, restart, rollback -----------------------------------------------

    async def _require_types(self, app: str, types: list[str]) -> ReleaseSpec:
        current = await self.current_spec(app)
        if current is None:
            raise CommandError(f"{app} has no release yet; push to deploy it first.")
        unknown = sorted(set(types) - set(current.long_running_types))
        if unknown:
            known = ", ".join(current.long_running_types) or "none"
            raise CommandError(f"{app} has no process type '{unknown[0]}'; its types are: {known}.")
        return current

    async def scale(self, app: str, counts: dict[str, int], actor: Actor, out: LineSink) -> int:
        await self._require_types(app, list(counts))
        reason = "scale " + " ".join(f"{t}={n}" for t, n in sorted(counts.items()))
        version = await self.update(app, lambda base: dataclasses.replace(base, formation=base.formation | counts),
                                    reason, actor, out, release_phase=False)
        assert version is not None
        return version

    async def set_limits(self, app: str, kind: str, limits: dict[str, str], actor: Actor,
                         out: LineSink) -> int | None:
        def change(base: ReleaseFields) -> ReleaseFields:
            return dataclasses.replace(base, limits=base.limits | {kind: base.limits.get(kind, {}) | limits})

        return await self.update(app, change, f"limits {'all' if kind == '*' else kind}", actor, out,
                                 release_phase=False)

    async def set_autoscale(self, app: str, autoscale: dict[str, Any] | None, reason: str, actor: Actor,
                            out: LineSink) -> int | None:
        return await self.update(app, lambda base: dataclasses.replace(base, autoscale=autoscale), reason, actor,
                                 out, release_phase=False)

    async def restart(self, app: str, process_type: str | None, actor: Actor, out: LineSink) -> int:
        await self._require_types(app, [process_type] if process_type else [])
        async with self.deploy_lock(app, actor):
            reason = f"restart {process_type}" if process_type else "restart"
            version = await self.release(app, lambda base: base, reason, actor, out, release_phase=False,
                                         restart=process_type is None)
            if process_type:
                await self.runtime.restart(app, process_type)
            return version

    async def rollback(self, app: str, version: int | None, actor: Actor, out: LineSink) -> int:
        target, old = await self.services.db.run(lambda s: self._rollback_target(s, app, version))

        def change(base: ReleaseFields) -> ReleaseFields:
            return dataclasses.replace(base, build_id=old.build_id, slug_key=old.slug_key, slug_digest=old.slug_digest,
                                       processes=old.processes, config=old.config, teresa_yaml=old.teresa_yaml)

        async with self.deploy_lock(app, actor):
            return await self.release(app, change, f"rollback to v{target}", actor, out, release_phase=True)

    def _rollback_target(self, session: Session, app: str, version: int | None) -> tuple[int, ReleaseFields]:
        record = access.find_app(session, app)
        if record.current_release is None:
            raise CommandError(f"{app} has no release yet; push to deploy it first.")
        if version is None:
            earlier = session.query(Release).filter(
                Release.app_id == record.id, Release.status == "succeeded",
                Release.version < record.current_release).order_by(Release.version.desc()).first()
            if earlier is None:
                raise CommandError(f"{app} has no earlier release to roll back to.")
            return earlier.version, releases.fields_of(earlier)
        found = releases.release_by_version(session, record, version)
        if found is None or found.status != "succeeded":
            raise CommandError(f"{app} has no successful release v{version}; run: releases {app}")
        return found.version, releases.fields_of(found)

