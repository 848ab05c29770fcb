"""`dashboard:login`: a one-time link into the dashboard for the user of this SSH session."""

from __future__ import annotations

from core.commands import CommandError, Invocation, command
from core.services import Services
from server.dashboard import sessions


@command("dashboard:login", "Print a one-time link that logs you into the web dashboard (valid for a minute).",
         example="dashboard:login", mutating=True, audit_details=lambda args: {})
async def dashboard_login(inv: Invocation[Services]) -> None:
    settings = inv.services.settings
    if not settings.dashboard_enabled:
        raise CommandError("the dashboard is not enabled on this server; the operator can set "
                           "TERESA_DASHBOARD_ENABLED=true.")
    user_id = inv.actor.user_id
    if user_id is None:
        raise CommandError("the local operator has no dashboard login; run dashboard:login over SSH as a user.")
    credential = inv.actor.who.credential
    token = await inv.services.db.run(lambda s: sessions.new_link(s, user_id, credential))
    await inv.print(f"{settings.dashboard_url}/login/{token}")
    await inv.print("Open it within a minute; it works once.")
