"""`dashboard:login`: a one-time link into the dashboard for the user of this SSH session."""

from __future__ import annotations

from sqlalchemy.orm import Session

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
    actor = inv.actor

    def issue(session: Session) -> str:
        credential = sessions.credential_of(session, actor)
        if credential is None:
            raise CommandError("the credential this connection logged in with is gone; reconnect and try again.")
        return sessions.new_link(session, user_id, credential)

    token = await inv.services.db.run(issue)
    await inv.print(f"{settings.dashboard_url}/login/{token}")
    await inv.print("Open it within a minute and confirm; it works once.")
