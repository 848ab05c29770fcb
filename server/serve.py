"""`teresa serve`: every listener and background task of one Teresa process.

Several processes (replicas) may serve one database and one bucket: deploy locks
and periodic jobs are database leases, repositories live in storage. On SIGTERM a
replica drains: /readyz fails, the SSH listener closes (established sessions go on),
pushes in flight finish (within the build and rollout timeouts), then it stops.
"""

from __future__ import annotations

import asyncio
import signal
from aiohttp import web

from controller import watchers
from controller.controller import Controller
from controller.platform import Platform
from controller.grant_renewal import renewal_loop
from controller.recovery import recover
from controller.runtime import make_runtime
from controller.runtime.base import Capability, Runtime
from core import health
from core import log as logging
from core.backup_commands import backup_loop
from core.config import Settings
from core.services import Services
from gitreceiver.git_service import GitService
from gitreceiver.ssh_server import SSHFrontDoor
from keys.ratelimit import login_limiter
from server.audit_commands import prune_loop
from server.control import serve_control
from server.dashboard.app import start_dashboard

log = logging.get(__name__)


async def build_platform(settings: Settings, runtime: Runtime | None = None) -> tuple[Platform, Runtime]:
    """Everything a server needs, built complete: migrated database, storage, runtime, controller."""
    services = Services.open(settings)
    await asyncio.to_thread(services.db.upgrade)
    runtime = runtime or make_runtime(settings)
    return Platform.assemble(services, Controller(services, runtime)), runtime


class Server:
    """The SSH front door, the runtime (with the local router), and the health listener."""

    def __init__(self, platform: Platform, runtime: Runtime):
        self.services = platform
        self.runtime = runtime
        self.git = GitService(platform, platform.controller)
        self.limiter = login_limiter(platform.settings)  # one login budget for both doors
        self.ssh = SSHFrontDoor(platform, limiter=self.limiter, git=self.git)
        self.draining = asyncio.Event()
        self.health: web.AppRunner | None = None
        self.dashboard: web.AppRunner | None = None
        self.control: asyncio.AbstractServer | None = None
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()  # what did start (runtime, router, listeners) must not outlive a failed start
            raise

    async def _start(self) -> None:
        settings = self.services.settings
        await self.runtime.start()
        # before any connection can start new work; other replicas' deploys are left alone
        await recover(self.services.db, self.runtime, settings.replica_name)
        await self.ssh.start()
        checks = {"database": health.database_check(self.services.db.engine),
                  "storage": health.storage_check(self.services.storage),
                  "runtime": self.runtime.health,
                  "draining": health.draining_check(self.draining)}
        token = await asyncio.to_thread(health.metrics_token, settings.data_dir, settings.metrics_token)
        self.health = await health.start_health_server(health.health_app(checks, metrics_token=token),
                                                       settings.http_addr)
        self.control = await serve_control(self.services)
        if settings.dashboard_enabled:
            self.dashboard = await start_dashboard(self.services, self.limiter)
        self.tasks.append(asyncio.create_task(backup_loop(self.services)))
        self.tasks += [asyncio.create_task(job) for job in watchers.background(self.services, self.services.controller)]
        self.tasks.append(asyncio.create_task(prune_loop(self.services)))
        if Capability.GRANT_RENEWAL in self.runtime.capabilities:
            self.tasks.append(asyncio.create_task(renewal_loop(self.services, self.runtime)))

    @property
    def http_port(self) -> int:
        assert self.health is not None
        return health.bound_port(self.health)

    @property
    def dashboard_port(self) -> int:
        assert self.dashboard is not None
        return health.bound_port(self.dashboard)

    async def drain(self) -> None:
        """Stop taking SSH connections and let the pushes in flight finish (within a build and a rollout)."""
        self.draining.set()
        if self.ssh.server is not None:
            self.ssh.server.close()  # the listener only: established sessions carry on
        limit = self.services.settings.push_seconds
        log.info("teresa_draining", pushes=len(self.git.pushes), limit_seconds=limit)
        self.git.announce(f"-----> This Teresa server is shutting down: your push finishes here first "
                          f"(it has up to {limit} seconds).")
        try:
            await asyncio.wait_for(self.git.drained(), limit)
        except asyncio.TimeoutError:
            log.warning("teresa_drain_timed_out", pushes=len(self.git.pushes))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.ssh.server is not None:
            await self.ssh.stop()
        if self.control is not None:
            self.control.close()
        if self.health is not None:
            await self.health.cleanup()
        if self.dashboard is not None:
            await self.dashboard.cleanup()
        await self.runtime.stop()


SINGLE_TENANT = ("the local runtime is single-tenant: Teresa is not running as root (or TERESA_APP_ISOLATION=off), "
                 "so every app's builds and "
                 "processes run as Teresa's own user and can read each other's files and the data directory; "
                 "run Teresa as root (each app then gets its own user) or use the Kubernetes runtime for several teams.")
ISOLATION = ((Capability.NAMESPACE_PER_APP, "one namespace per app"), (Capability.USER_PER_APP, "one user per app"))


def tenancy(capabilities: Capability) -> str:
    """What the start-up line says about tenants: a runtime that keeps no two apps apart is single-tenant, said plainly."""
    return next((said for isolation, said in ISOLATION if isolation in capabilities), SINGLE_TENANT)


async def serve(settings: Settings) -> None:
    platform, runtime = await build_platform(settings)
    server = Server(platform, runtime)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    routed = Capability.ROUTER in runtime.capabilities
    log.info("teresa_started", data_dir=str(settings.data_dir), runtime=settings.runtime,
             router=f"{settings.router_addr[0]}:{settings.router_addr[1]}" if routed else None,
             tenancy=tenancy(runtime.capabilities))
    await stop.wait()
    log.info("teresa_stopping")
    await server.drain()
    await server.stop()
    platform.db.dispose()
