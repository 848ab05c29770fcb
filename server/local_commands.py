"""Commands that exist only on the server host: running the server, migrating the database."""

from __future__ import annotations

import asyncio

from core.commands import LOCAL, CommandError, Invocation, command
from core.services import Services


@command("serve", "Run the Teresa server (SSH, router, runtime) until stopped.", local_only=True, access=LOCAL,
         example="teresa serve")
async def serve_command(inv: Invocation[Services]) -> None:
    from core.config import ConfigError
    from server.serve import serve

    try:
        await serve(inv.services.settings)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:  # most often: an address already in use
        raise CommandError(f"Teresa could not start: {exc.strerror or exc}; check TERESA_SSH_ADDR, "
                           "TERESA_ROUTER_ADDR and TERESA_HTTP_ADDR.") from None


@command("db:upgrade", "Apply pending database migrations.", local_only=True, access=LOCAL,
         example="teresa db:upgrade")
async def db_upgrade(inv: Invocation[Services]) -> None:
    await asyncio.to_thread(inv.services.db.upgrade)
    await inv.print("Database is up to date.")
