"""`teresa serve`: every listener and background task of one Teresa process."""

from __future__ import annotations

import asyncio
import signal

from core import log as logging
from core.config import Settings
from core.db import Database
from core.services import Services

log = logging.get(__name__)


async def build_services(settings: Settings) -> Services:
    db = Database(settings.database_url)
    await asyncio.to_thread(db.upgrade)
    return Services(settings=settings, db=db)


class Server:
    def __init__(self, services: Services):
        from gitreceiver.ssh_server import SSHFrontDoor

        self.services = services
        self.ssh = SSHFrontDoor(services)

    async def start(self) -> None:
        await self.ssh.start()

    async def stop(self) -> None:
        await self.ssh.stop()


async def serve(settings: Settings) -> None:
    services = await build_services(settings)
    server = Server(services)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    log.info("teresa_started", data_dir=str(settings.data_dir), runtime=settings.runtime)
    await stop.wait()
    log.info("teresa_stopping")
    await server.stop()
    services.db.dispose()
