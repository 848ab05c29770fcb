"""`teresa serve`: every listener and background task of one Teresa process."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from aiohttp import web

from controller.runtime import make_runtime
from core import health
from core import log as logging
from core.config import Settings
from core.control import serve_control
from core.db import Database
from core.services import Services
from core.storage import storage_for

log = logging.get(__name__)


async def build_services(settings: Settings, runtime: Any = None) -> Services:
    from controller.controller import Controller

    db = Database(settings.database_url)
    await asyncio.to_thread(db.upgrade)
    services = Services(settings=settings, db=db, storage=storage_for(settings.storage),
                        runtime=runtime or make_runtime(settings))
    services.controller = Controller(services)
    return services


class Server:
    """The SSH front door, the runtime (with the local router), and the health listener."""

    def __init__(self, services: Services):
        from gitreceiver.git_service import GitService
        from gitreceiver.pipeline import PushPipeline
        from gitreceiver.ssh_server import SSHFrontDoor

        self.services = services
        self.ssh = SSHFrontDoor(services, git=GitService(services, PushPipeline(services)))
        self.health: web.AppRunner | None = None
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
        await self.services.runtime.start()
        await self.ssh.start()
        checks = {"database": health.database_check(self.services.db.engine),
                  "storage": health.storage_check(self.services.storage)}
        if runtime_check := getattr(self.services.runtime, "health", None):
            checks["runtime"] = runtime_check
        self.health = await health.start_health_server(health.health_app(checks), settings.http_addr)
        self.control = await serve_control(self.services)
        self.tasks.extend(asyncio.create_task(t) for t in self.background())

    def background(self) -> list[Any]:
        try:
            from core.backup_commands import backup_loop
        except ImportError:
            return []
        return [backup_loop(self.services)]

    @property
    def http_port(self) -> int:
        assert self.health is not None
        return health.bound_port(self.health)

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
        await self.services.runtime.stop()


async def serve(settings: Settings) -> None:
    services = await build_services(settings)
    server = Server(services)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    log.info("teresa_started", data_dir=str(settings.data_dir), runtime=settings.runtime,
             router=f"{settings.router_addr[0]}:{settings.router_addr[1]}" if settings.runtime == "local" else None)
    await stop.wait()
    log.info("teresa_stopping")
    await server.stop()
    services.db.dispose()
