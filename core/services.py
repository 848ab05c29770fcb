"""What every command and session works with at the bottom layer: settings, database, storage.

Built complete by the composition root (`server/`); the controller adds itself
on top (`controller.platform.Platform`), so nothing here knows about the layers above.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config import Settings
from core.db import Database
from core.private import private_dir
from core.storage import Storage, storage_for


@dataclass(frozen=True)
class Services:
    settings: Settings
    db: Database
    storage: Storage

    @classmethod
    def open(cls, settings: Settings, *, make_data_dir: bool = True) -> "Services":
        """Services for these settings; the database is not migrated (see `Database.upgrade`).

        The data directory is made 0700 (created unless `make_data_dir` is false: `help` and `version`
        leave a missing one missing)."""
        if make_data_dir or settings.data_dir.is_dir():
            private_dir(settings.data_dir)
        return cls(settings=settings, db=Database(settings.database_url), storage=storage_for(settings.storage))

    def git_remote(self, app: str) -> str:
        host, port = self.settings.public_ssh_addr
        return f"ssh://git@{host}:{port}/{app}.git" if port != 22 else f"git@{host}:{app}"
