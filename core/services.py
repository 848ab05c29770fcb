"""The shared objects a command or a session works with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from core.config import Settings
from core.db import Database


class AppLifecycle(Protocol):
    async def created(self, app: str) -> None: ...

    async def destroyed(self, app: str) -> None: ...

    async def info(self, app: str) -> dict[str, Any]: ...


@dataclass
class Services:
    settings: Settings
    db: Database
    apps: AppLifecycle | None = None

    def git_remote(self, app: str) -> str:
        host, port = self.settings.public_ssh_addr
        return f"ssh://git@{host}:{port}/{app}.git" if port != 22 else f"git@{host}:{app}"
