"""Fixtures of the notification tests that need no server: services on a fresh database, HTTP and SMTP
receivers on loopback that a test scripts request by request."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import pytest_asyncio
from aiohttp import web

from controller.notifications.targets import SMTPServer
from core.config import Settings
from core.db import Database
from core.ports import free_port
from core.services import Services
from core.storage import storage_for

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Serve = Callable[[Handler], Awaitable[str]]


@pytest.fixture
def services(database_url: str, tmp_path: Path) -> Iterator[Services]:
    """Services on a fresh database (SQLite, MariaDB, PostgreSQL in turn) that deliver to loopback too."""
    settings = Settings.from_env({"TERESA_DATA_DIR": str(tmp_path), "TERESA_NOTIFICATIONS_ALLOW_PRIVATE": "true"})
    db = Database(database_url)
    db.upgrade()
    yield Services(settings=settings, db=db, storage=storage_for(settings.storage))
    db.dispose()


@pytest_asyncio.fixture
async def serve() -> AsyncIterator[Serve]:
    """`await serve(handler)`: an HTTP server on loopback, in the test's loop, answering every request with
    `handler`; returns its base URL. A handler the test left waiting is cancelled at the end."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        async def route(request: web.Request) -> web.StreamResponse:
            return await handler(request)

        app = web.Application()
        app.router.add_route("*", "/{path:.*}", route)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


@dataclass
class Mailbox:
    """What an SMTP server on loopback was asked to deliver: one envelope recipient list per message."""

    server: SMTPServer
    recipients: list[list[str]] = field(default_factory=list)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.recipients.append(list(envelope.rcpt_tos))  # type: ignore[attr-defined]
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    port = free_port()
    box = Mailbox(SMTPServer("127.0.0.1", port, "", "", "", "teresa@example.com"))
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    yield box
    smtp.stop()
