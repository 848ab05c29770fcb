"""Commands that exist only on the server host: running the server, migrating the database."""

from __future__ import annotations

import asyncio

from core.commands import LOCAL, Invocation, command


@command("serve", "Run the Teresa server (SSH, router, runtime) until stopped.", local_only=True, access=LOCAL,
         example="teresa serve")
async def serve_command(inv: Invocation) -> None:
    from core.server import serve

    await serve(inv.services.settings)


@command("db:upgrade", "Apply pending database migrations.", local_only=True, access=LOCAL,
         example="teresa db:upgrade")
async def db_upgrade(inv: Invocation) -> None:
    await asyncio.to_thread(inv.services.db.upgrade)
    await inv.print("Database is up to date.")
