"""The local runtime: releases run as supervised child processes behind the router."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import shutil
import sys
import uuid
from pathlib import Path
from typing import AsyncIterator, Mapping, Sequence

import aiohttp

from builder.job import STACK_SETTINGS, BuildRequest, Grants
from controller.runtime.base import (
    BuildFailed, BuildTimedOut, LineSink, ProcessStatus, ReleasePhaseFailed, RolloutFailed, RuntimeFailure,
    ignored_features, raise_for_build_status,
)
from controller.runtime.local.capabilities import local_capabilities
from controller.runtime.local.oneoff import run_oneoff
from controller.runtime.local.orphans import BUILDER_MARK, reap_orphans
from controller.runtime.local.processes import base_env, run_streaming
from controller.runtime.local.rollout import Rollout
from controller.runtime.local.router import Router
from controller.runtime.local.slugs import SlugCache, SlugUnavailable
from controller.runtime.local.staging import Staging
from controller.runtime.local.state import forget_current, load_current, save_current
from controller.runtime.local.supervisor import AppSupervisor, Timings
from controller.runtime.local.tenancy import AppUser, Tenancy
from controller.spec import ReleaseSpec
from core import log
from core.commands import Input, Output
from core.config import Settings, local_apps_dir
from core.layout import procfile_key
from core.private import private_dir
from core.storage import StorageError, storage_for

logger = log.get("runtime.local")


def installed_tool(name: str) -> str:
    """The console script installed beside this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


async def _discard(_line: str) -> None:
    pass


class LocalRuntime:
    def __init__(self, settings: Settings, *, slugrunner: Sequence[str] | None = None,
                 slugbuilder: Sequence[str] | None = None, timings: Timings = Timings(),
                 serve_router: bool = True) -> None:
        self.settings = settings
        self.capabilities = local_capabilities(settings)
        self.apps_dir = settings.data_dir / "apps"   # the server's own state per app: current.json, logs, uid
        private = [settings.data_dir, *([settings.storage.root] if settings.storage.type == "local" else [])]
        self.tenancy = Tenancy(self.apps_dir, local_apps_dir(settings), settings.app_uid_base,
                               isolate=settings.app_isolation, private=private, env=settings.env)
        self.storage = storage_for(settings.storage)
        self.slugrunner = list(slugrunner or [installed_tool("teresa-slugrunner")])
        self.slugbuilder = list(slugbuilder or [installed_tool("teresa-slugbuilder")])
        self.timings = timings
        self.router = Router(settings.domain, self._serving_ports, trusted_proxies=settings.trusted_proxies,
                             access_log=self._access_line, header_timeout=settings.router_header_timeout,
                             response_timeout=settings.router_response_timeout,
                             max_connections_per_address=settings.router_max_connections_per_address)
        self.slugs = SlugCache(self.tenancy, self.slugrunner, self.storage)
        self._serve_router = serve_router
        self._supervisors: dict[str, AppSupervisor] = {}
        self._current: dict[str, ReleaseSpec] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._restoring: list[asyncio.Task[None]] = []
        self._run_ids = itertools.count(1)
        self._http: aiohttp.ClientSession | None = None

    # -- lifecycle

    async def start(self) -> None:
        await asyncio.to_thread(self.tenancy.check)
        await asyncio.to_thread(private_dir, self.apps_dir)
        # Health checks close their connections, as Kubernetes' do: an idle kept-alive
        # connection would tie up a single-threaded app server.
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                           cookie_jar=aiohttp.DummyCookieJar())
        if self._serve_router:
            await self.router.start(self.settings.router_addr)
        if reaped := await asyncio.to_thread(reap_orphans, self.tenancy.work_root):
            logger.warning("stopped processes left behind by an earlier server", count=len(reaped))
        for app_root in await asyncio.to_thread(self._app_roots):
            await asyncio.to_thread(shutil.rmtree, self.tenancy.oneoffs_dir(app_root.name), True)  # a dead server's
            self.router.add_app(app_root.name)
            await asyncio.to_thread(self.supervisor(app_root.name).logs.load_history)
            release = await asyncio.to_thread(load_current, app_root)
            if release is not None:
                self._current[release.app] = release
                self.router.set_domains(release.app, release.domains)
                self._restoring.append(asyncio.create_task(self._restore(release)))

    async def health(self) -> None:
        """A readiness check for /readyz: the router takes requests (when this runtime serves it)."""
        if self._serve_router and self.router.port is None:
            raise RuntimeError("the local router is not listening")

    async def wait_restored(self) -> None:
        await asyncio.gather(*self._restoring, return_exceptions=True)

    async def stop(self) -> None:
        for task in self._restoring:
            task.cancel()
        await self.wait_restored()
        await asyncio.gather(*(self._stop_app(app) for app in list(self._supervisors)))
        await self.router.stop()
        if self._http:
            await self._http.close()

    async def refresh_grants(self) -> int:
        """Nothing to renew: local processes get their slug from this process, through no grant that expires."""
        return 0

    async def reconcile(self, wanted: Mapping[str, ReleaseSpec | None]) -> None:
        """Each app at its release in `wanted`; an app not there, or with nothing released, runs nothing."""
        await self.wait_restored()
        for app, release in wanted.items():
            running = self._current.get(app)
            if release is None or (running is not None and running.version == release.version):
                continue
            logger.warning("app reconciled", app=app, release=release.label,
                           was=running.label if running else "nothing")
            try:
                await self.deploy(release, running, _discard)
            except RuntimeFailure as exc:
                logger.error("app not reconciled", app=app, release=release.label, reason=str(exc))
        for app in [a for a, r in self._current.items() if wanted.get(a) is None]:
            logger.warning("app stopped: the database has no release for it", app=app)
            async with self._lock(app):
                await self._stop_app(app)
                self._current.pop(app, None)
                self.router.set_domains(app, ())
                await asyncio.to_thread(forget_current, self.apps_dir / app)

    def _app_roots(self) -> list[Path]:
        return sorted(p for p in self.apps_dir.iterdir() if p.is_dir()) if self.apps_dir.is_dir() else []

    async def _restore(self, release: ReleaseSpec) -> None:
        """Start the app's processes again; they are supervised from then on, ready or not."""
        async with self._lock(release.app):
            try:
                app_dir = await self.slugs.ensure(release)
            except SlugUnavailable as exc:
                logger.warning("app not restored", app=release.app, reason=str(exc))
                return
            supervisor = self.supervisor(release.app)
            for process_type in release.long_running_types:
                for _ in range(release.replicas(process_type) - len(supervisor.live(process_type))):
                    supervisor.add(release, process_type, app_dir)
            logger.info("app restored", app=release.app, release=release.label)

    # -- apps

    def supervisor(self, app: str) -> AppSupervisor:
        if app not in self._supervisors:
            if self._http is None:
                raise RuntimeError("LocalRuntime.start() must be awaited before it runs processes.")
            self._supervisors[app] = AppSupervisor(app, self.apps_dir / app, self._http, self.timings, self.slugrunner,
                                                   user=self.tenancy.user(app), tmp_dir=self.tenancy.tmp_dir(app))
        return self._supervisors[app]

    def _lock(self, app: str) -> asyncio.Lock:
        return self._locks.setdefault(app, asyncio.Lock())

    def _access_line(self, app: str, line: str) -> None:
        if self._http is not None:
            self.supervisor(app).logs.append("router", "router", line)

    def _serving_ports(self, app: str) -> list[int]:
        supervisor = self._supervisors.get(app)
        return supervisor.serving_ports("web") if supervisor else []

    async def create_app(self, app: str) -> None:
        await asyncio.to_thread(private_dir, self.apps_dir / app)
        await asyncio.to_thread(self.tenancy.prepare, app)
        self.router.add_app(app)

    async def destroy_app(self, app: str) -> None:
        async with self._lock(app):
            self.router.remove_app(app)
            await self._stop_app(app)
            self._current.pop(app, None)
            await asyncio.to_thread(shutil.rmtree, self.apps_dir / app, True)
            await asyncio.to_thread(shutil.rmtree, self.tenancy.app_root(app), True)

    async def _stop_app(self, app: str) -> None:
        supervisor = self._supervisors.pop(app, None)
        if supervisor:
            await supervisor.stop_all(drain=False)
            supervisor.logs.close()

    async def set_domains(self, app: str, domains: Sequence[str], *, tls_secret: str = "") -> None:
        """Custom domains the router sends to `app`, besides APP.<TERESA_DOMAIN>, kept across restarts.

        A later deploy replaces them with its release's `domains`.
        """
        self.router.set_domains(app, tuple(domains))
        async with self._lock(app):
            if current := self._current.get(app):
                self._current[app] = current = dataclasses.replace(current, domains=tuple(domains))
                await asyncio.to_thread(save_current, self.apps_dir / app, current)

    # -- releases

    async def build(self, request: BuildRequest, out: LineSink) -> None:
        """Run the slugbuilder as the app's user with its own objects as open files; store what it made."""
        app = request.app
        await asyncio.to_thread(self.tenancy.prepare, app)
        user = await asyncio.to_thread(self.tenancy.user, app)
        staging = await asyncio.to_thread(Staging, self.storage, self.apps_dir / app)
        try:
            await self._build_staged(request, out, staging, user)
        finally:
            await asyncio.to_thread(staging.__exit__, None, None, None)

    async def _build_staged(self, request: BuildRequest, out: LineSink, staging: Staging,
                            user: AppUser | None) -> None:
        try:
            source = await asyncio.to_thread(staging.read, request.source_key)
            cached = bool(request.cache_key) and await asyncio.to_thread(self.storage.exists, request.cache_key)
            cache = await asyncio.to_thread(staging.read, request.cache_key) if cached else ""
        except StorageError as exc:
            raise BuildFailed(f"The pushed source could not be read from storage ({exc}); push again.") from None
        grants = Grants(source=source, slug=staging.write("slug"), procfile=staging.write("Procfile"),
                        cache=cache, cache_upload=staging.write("cache") if request.cache_key else "")
        stack = {k: v for k, v in self.settings.env.items() if k.startswith(STACK_SETTINGS)}  # the stack's runtimes
        tmp = str(self.tenancy.tmp_dir(request.app))
        # No storage setting: the build reaches its own objects through the grants alone. BUILDER_MARK names
        # the work root whose orphans are reaped after a crash (orphans.py), so a left-over build is found again.
        env = base_env({**stack, **request.to_env(grants), "HOME": tmp, "TMPDIR": tmp,
                        BUILDER_MARK: str(self.tenancy.work_root.resolve())})
        try:
            status = await run_streaming(self.slugbuilder, env, out, timeout=request.timeout_seconds, cwd=Path(tmp),
                                         user=user, pass_fds=staging.fds)
        except asyncio.TimeoutError:
            raise BuildTimedOut(request.timeout_seconds) from None
        except OSError as exc:
            raise BuildFailed(f"The slug builder could not be started ({exc.strerror}); "
                              "reinstall Teresa so that teresa-slugbuilder is on its PATH.") from None
        raise_for_build_status(status, request.timeout_seconds)
        await asyncio.to_thread(self._store_outputs, request, staging)

    def _store_outputs(self, request: BuildRequest, staging: Staging) -> None:
        staging.close_fds()
        slug = staging.written("slug")
        if slug is None:
            raise BuildFailed("The build wrote no slug; see its output above.")
        self.storage.put_file(request.slug_key, slug)
        if procfile := staging.written("Procfile"):
            self.storage.put_file(procfile_key(request.slug_key), procfile)
        if request.cache_key and (cache := staging.written("cache")):
            self.storage.put_file(request.cache_key, cache)

    async def release_phase(self, release: ReleaseSpec, out: LineSink) -> None:
        if "release" not in release.processes:
            return
        try:
            app_dir = await self.slugs.ensure(release)
        except SlugUnavailable as exc:
            raise ReleasePhaseFailed(str(exc)) from None
        logs = self.supervisor(release.app).logs
        await out(f"-----> Running the release command of {release.label}")

        async def both(line: str) -> None:
            logs.append("release", "release.1", line)
            await out(line)

        tail: list[str] = []
        env = base_env({**release.config, "TERESA_APP_DIR": str(app_dir), "DYNO": "release.1",
                        "TMPDIR": str(self.tenancy.tmp_dir(release.app))})
        user = await asyncio.to_thread(self.tenancy.user, release.app)
        try:
            status = await run_streaming([*self.slugrunner, "start", "release"], env, both, cwd=app_dir,
                                         timeout=self.settings.build_timeout, tail=tail, tail_size=5, user=user)
        except asyncio.TimeoutError:
            raise ReleasePhaseFailed(f"The release command of {release.label} ran longer than "
                                     f"{self.settings.build_timeout} seconds and was stopped; "
                                     f"{release.label} was not released.") from None
        if status != 0:
            output = f" (last output: {' / '.join(tail)})" if tail else ""
            raise ReleasePhaseFailed(f"The release command of {release.label} failed with exit status {status}"
                                     f"{output}; {release.label} was not released.")

    async def deploy(self, release: ReleaseSpec, previous: ReleaseSpec | None, out: LineSink, *,
                     restart: bool = False) -> None:
        """Roll `release` out. What runs now is known here, so `previous` is only informative."""
        restart_types = release.long_running_types if restart else ()
        if unsupported := ignored_features(release, self.capabilities):
            await out(f"-----> The local runtime does not run {unsupported}; they apply on Kubernetes.")
        async with self._lock(release.app):
            self.router.add_app(release.app)
            await self._roll(release, out, restart_types)
            self.router.set_domains(release.app, release.domains)

    async def _roll(self, release: ReleaseSpec, out: LineSink, restart: Sequence[str]) -> None:
        try:
            app_dir = await self.slugs.ensure(release)
        except SlugUnavailable as exc:
            raise RolloutFailed(str(exc)) from None
        supervisor = self.supervisor(release.app)
        formation = " ".join(f"{t}={release.replicas(t)}" for t in release.long_running_types)
        await out(f"-----> Rolling out {release.label}: {formation or 'no processes'}")
        await Rollout(supervisor, release, app_dir, out, restart).run(self.settings.rollout_timeout)
        self._current[release.app] = release
        await asyncio.to_thread(save_current, self.apps_dir / release.app, release)
        in_use = {r.app_dir for r in supervisor.live()} | {app_dir}
        await self.slugs.prune(release.app, in_use)

    async def restart(self, app: str, process_type: str | None) -> None:
        async with self._lock(app):
            current = self._current.get(app)
            if current is None:
                raise RuntimeFailure(f"{app} has no running release; push to deploy it first.")
            types = [process_type] if process_type else current.long_running_types
            unknown = [t for t in types if t not in current.long_running_types]
            if unknown:
                known = ", ".join(current.long_running_types) or "none"
                raise RuntimeFailure(f"{app} has no process type {unknown[0]!r}; its types are {known}.")
            await self._roll(current, _discard, types)

    def current(self, app: str) -> ReleaseSpec | None:
        return self._current.get(app)

    async def ps(self, app: str) -> list[ProcessStatus]:
        supervisor = self._supervisors.get(app)
        return supervisor.status() if supervisor else []

    async def logs(self, app: str, lines: int, follow: bool, process_type: str | None) -> AsyncIterator[str]:
        async for line in self.supervisor(app).logs.read(lines, follow, process_type):
            yield line

    async def run(self, release: ReleaseSpec, argv: list[str], stdin: Input, out: Output) -> int:
        try:
            app_dir = await self.slugs.ensure(release)
        except SlugUnavailable as exc:
            raise RuntimeFailure(str(exc)) from None
        app = release.app
        dyno = f"run.{next(self._run_ids)}"
        user = await asyncio.to_thread(self.tenancy.user, app)
        # A copy of its own, as on Heroku: what a one-off writes never reaches a running process's files.
        # It is made as the app's user, who owns it, so nothing the app controls is followed as root.
        copy = self.tenancy.oneoffs_dir(app) / f"{dyno}.{uuid.uuid4().hex[:8]}"
        try:
            await asyncio.to_thread(self.tenancy.copy_release, app_dir, copy, user)
            env = base_env({**release.config, "TERESA_APP_DIR": str(copy), "DYNO": dyno,
                            "TMPDIR": str(self.tenancy.tmp_dir(app))})
            return await run_oneoff([*self.slugrunner, "exec", "--", *argv], env, copy, stdin, out, user=user)
        finally:
            await asyncio.to_thread(shutil.rmtree, copy, True)
