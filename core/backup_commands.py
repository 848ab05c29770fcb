"""Backups of Teresa's database from the server host: take, list and restore them; the hourly loop."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Any, AsyncIterator

from sqlalchemy.exc import SQLAlchemyError

from core import backup, leases
from core import log as logging
from core.commands import LOCAL, CommandError, Invocation, arg, command
from core.services import Services
from core.models import Base
from core.storage import Storage, storage_for


BACKUP_LEASE = "periodic:backup"
log = logging.get(__name__)


def _storage(services: Any) -> Storage:
    return services.storage or storage_for(services.settings.storage)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@command("backup", "Write a consistent dump of Teresa's database to storage, under backups/.",
         local_only=True, access=LOCAL, example="teresa backup", mutating=True)
async def backup_now(inv: Invocation[Services]) -> None:
    taken = await asyncio.to_thread(backup.backup_to_storage, inv.services.db.engine, Base.metadata,
                                    _storage(inv.services), _now())
    await inv.print(f"Backup {taken.name} written; restore it with: teresa backup:restore {taken.name}")


@command("backup:list", "List the backups in storage, oldest first.", local_only=True, access=LOCAL, json=True,
         example="teresa backup:list")
async def backup_list(inv: Invocation[Services]) -> None:
    found = await asyncio.to_thread(backup.list_backups, _storage(inv.services))
    rows = [{"name": b.name, "taken_at": b.taken_at.isoformat().replace("+00:00", "Z")} for b in found]
    await inv.print_listing(rows, "No backups yet; take one with: teresa backup",
                            ["NAME", "TAKEN"], [[r["name"], r["taken_at"]] for r in rows])


@command("backup:restore", "Load a backup into Teresa's database (an empty one, unless --force).",
         arg("name", metavar="NAME", help="the backup's name, as backup:list shows it"),
         arg("--force", action="store_true", help="delete what the database holds and replace it with the backup"),
         local_only=True, access=LOCAL, example="teresa backup:restore teresa-20261122T030000Z.json.gz", mutating=True)
async def backup_restore(inv: Invocation[Services]) -> None:
    try:
        counts = await asyncio.to_thread(backup.restore_from_storage, inv.services.db.engine, Base.metadata,
                                         _storage(inv.services), inv.args.name, inv.args.force)
    except backup.BackupError as exc:
        raise CommandError(str(exc)) from None
    await inv.print(f"Restored {inv.args.name.removeprefix(backup.PREFIX)}: {sum(counts.values())} rows "
                    f"in {len(counts)} tables.")


async def backup_loop(services: Any) -> None:
    """For `teresa serve`: back up every settings.backup_interval seconds and prune; returns at once when 0."""
    seconds = services.settings.backup_interval
    if seconds <= 0:
        return
    settings = services.settings

    @contextlib.asynccontextmanager
    async def exclusive() -> AsyncIterator[bool]:
        """One replica at a time: whoever holds the `periodic:backup` lease; the others skip this round."""
        try:
            async with leases.held(services.db, BACKUP_LEASE, "backup", settings.replica_name,
                                   settings.deploy_lease_seconds):
                yield True
        except leases.LeaseTaken:
            yield False
        except leases.LeaseLost:  # the backup was stopped; the next round tries again
            log.warning("backup_lease_lost")
        except SQLAlchemyError as exc:  # the database is away: try again next round
            log.warning("backup_lease_unavailable", error=type(exc).__name__)
            yield False

    await backup.run_periodic_backups(services.db.engine, Base.metadata, _storage(services),
                                      dt.timedelta(seconds=seconds), exclusive=exclusive)
