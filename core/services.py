"""The shared objects a command or a session works with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.config import Settings
from core.db import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    storage: Any = None      # core.storage.Storage
    runtime: Any = None      # controller.runtime.base.Runtime
    controller: Any = None   # controller.controller.Controller

    def git_remote(self, app: str) -> str:
        host, port = self.settings.public_ssh_addr
        return f"ssh://git@{host}:{port}/{app}.git" if port != 22 else f"git@{host}:{app}"
