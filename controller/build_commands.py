"""Commands about pushes: the builds of an app and their output."""

from __future__ import annotations

import asyncio
import re
from typing import TypedDict

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.platform import Platform
from core.commands import APP, APP_TEAM, CommandError, Invocation, arg, command
from core.models import Build, utc_text
from core.storage import StorageNotFound
from core.layout import BuildKeys
from keys import access


class _BuildRow(TypedDict):
    """One build of `builds --json`."""
    number: int
    id: str
    status: str
    reason: str
    user: str
    ref: str
    commit: str
    started_at: str
    duration_seconds: float | None


def _row(build: Build) -> _BuildRow:
    duration = build.duration_seconds
    return {"number": build.number, "id": build.id, "status": build.status, "reason": build.reason,
            "user": build.user, "ref": build.ref.removeprefix("refs/heads/"), "commit": build.commit,
            "started_at": utc_text(build.started_at),
            "duration_seconds": round(duration, 1) if duration is not None else None}


@command("builds", "List an app's builds (every push to a deploy branch), newest first.", APP, json=True,
         access=APP_TEAM, example="builds myapp")
async def builds_list(inv: Invocation[Platform]) -> None:
    def load(session: Session) -> list[_BuildRow]:
        app = access.app_for(session, inv.actor, inv.args.app)
        return [_row(b) for b in session.scalars(select(Build).where(Build.app_id == app.id)
                                                 .order_by(Build.number.desc()).limit(100))]

    rows = await inv.services.db.run(load)
    await inv.print_listing(rows, f"{inv.args.app} has no builds; push to build it.",
                            ["BUILD", "STATUS", "BRANCH", "COMMIT", "BY", "STARTED", "SECONDS"],
                            [[r["number"], r["status"], r["ref"], r["commit"][:7], r["user"], r["started_at"], r["duration_seconds"] if r["duration_seconds"] is not None else "-"] for r in rows])


@command("builds:output", "Replay a build's output (default: the latest build).", APP,
         arg("build", nargs="?", metavar="BUILD", help="the build number"), access=APP_TEAM,
         example="builds:output myapp 7")
async def builds_output(inv: Invocation[Platform]) -> None:
    wanted = inv.args.build
    if wanted is not None and not re.fullmatch(r"[0-9]{1,9}", wanted):
        raise CommandError(f"BUILD must be a build number from: builds {inv.args.app}")

    def load(session: Session) -> tuple[str, str]:
        app = access.app_for(session, inv.actor, inv.args.app)
        query = select(Build).where(Build.app_id == app.id)
        query = query.where(Build.number == int(wanted)) if wanted else query.order_by(Build.number.desc())
        build = session.scalars(query.limit(1)).first()
        if build is None:
            raise CommandError(f"{app.name} has no build {wanted or 'yet'}; run: builds {app.name}")
        return app.name, build.id

    app, build_id = await inv.services.db.run(load)
    try:
        stream = await asyncio.to_thread(inv.services.storage.open_read, BuildKeys(app, build_id).log)
    except StorageNotFound:
        raise CommandError("that build's output is not available yet (the build is still running).") from None
    try:
        while chunk := await asyncio.to_thread(stream.read, 65536):
            await inv.out.write(chunk.decode("utf-8", "replace"))
    finally:
        stream.close()
