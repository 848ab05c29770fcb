"""notifications:*: where a team's or an app's events go, and how their deliveries went."""

from __future__ import annotations

import argparse
import asyncio

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.events import EventKind, parse_kinds
from controller.notifications import queue
from controller.notifications.targets import masked, validate
from core.commands import CommandError, Invocation, arg, command, shown
from core.models import App, NotificationTarget, Team
from core.services import Services
from keys import access

ACCESS = "members of the team (or of the app's team), and admins"
SCOPE = arg("scope", metavar="TEAM|APP", help="a team (all its apps) or one app; team:NAME or app:NAME when both exist")
MAX_TARGETS = 20  # per team or app


def _resolve(session: Session, inv: Invocation[Services], name: str) -> tuple[Team | None, App | None]:
    """The team or the app `name` names (checking the actor may act on it)."""
    kind, sep, rest = name.partition(":")
    if sep and kind in ("team", "app"):
        return (access.team_for(session, inv.actor, rest), None) if kind == "team" else \
            (None, access.app_for(session, inv.actor, rest))
    app = session.scalar(select(App).where(App.name == name))
    team = session.scalar(select(Team).where(Team.name == name))
    if app is not None and team is not None:
        raise CommandError(f"'{shown(name)}' is both a team and an app; write team:{name} or app:{name}.")
    if app is not None:
        return None, access.app_for(session, inv.actor, name)
    if team is not None:
        return access.team_for(session, inv.actor, name), None
    raise CommandError(f"there is no team or app named '{shown(name)}'; run: apps:list")


def _visible_targets(session: Session, inv: Invocation[Services], scope: str | None) -> list[NotificationTarget]:
    if scope:
        team, app = _resolve(session, inv, scope)
        if app is not None:  # an app's own targets, and its team's (they get the app's events too)
            return queue.targets_for(session, team_ids={app.team_id}, app_ids={app.id})
        assert team is not None
        return queue.targets_for(session, team_ids={team.id}, app_ids={a.id for a in team.apps})
    if inv.actor.is_admin:
        return queue.targets_for(session, team_ids=None, app_ids=None)
    teams = access.member_team_ids(session, inv.actor)
    return queue.targets_for(session, team_ids=teams, app_ids={a.id for a in access.visible_apps(session, inv.actor)})


def _masked_target(args: argparse.Namespace) -> dict[str, str]:
    """notifications:add in the audit log: where the target goes, not the tokens its URL may carry."""
    return {"scope": args.scope, "url": masked(args.url), "events": args.events}


@command("notifications:add", "Send a team's or an app's events to a URL (signed JSON POST) or email:ADDRESS.",
         SCOPE, arg("url", metavar="URL", help="https://… or email:ADDRESS"),
         arg("--events", metavar="EVENTS", default="",
             help=f"comma-separated, from: {', '.join(k.value for k in EventKind)} (default: all)"),
         access=ACCESS, mutating=True, audit_details=_masked_target,
         example="notifications:add shop https://hooks.example.com/teresa --events deploy,crash")
async def notifications_add(inv: Invocation[Services]) -> None:
    try:
        events = sorted({k.value for k in parse_kinds(inv.args.events)})
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    settings = inv.services.settings.notifications
    await inv.services.db.run(lambda s: _resolve(s, inv, inv.args.scope))  # permission before resolving the URL
    url = await asyncio.to_thread(validate, inv.args.url, allow_private=settings.allow_private,
                                  smtp_configured=bool(settings.smtp_url))

    def save(session: Session) -> tuple[int, str, str]:
        team, app = _resolve(session, inv, inv.args.scope)
        if app is not None:
            owner, label = NotificationTarget.app_id == app.id, f"app {app.name}"
        else:
            assert team is not None
            owner, label = NotificationTarget.team_id == team.id, f"team {team.name}"
        existing = session.scalars(select(NotificationTarget).where(owner)).all()
        if any(t.url == url for t in existing):
            raise CommandError(f"{label} already sends notifications to that URL; see: notifications {inv.args.scope}")
        if len(existing) >= MAX_TARGETS:
            raise CommandError(f"{label} has {MAX_TARGETS} notification targets already; remove one first.")
        target_id, secret = queue.add_target(session, team_id=team.id if team else None,
                                             app_id=app.id if app else None, url=url, events=events,
                                             created_by=inv.actor.email)
        return target_id, secret, label

    target_id, secret, label = await inv.services.db.run(save)
    await inv.print(f"Notification {target_id} added: {label} → {url} ({', '.join(events) or 'all events'}).")
    if not url.startswith("email:"):
        await inv.print(f"Signing secret (shown only now; verify X-Teresa-Signature with it): {secret}")


@command("notifications", "List where notifications go (all you may see, or one team's or app's).",
         arg("scope", nargs="?", metavar="TEAM|APP", help="only this team or app"), json=True, access=ACCESS,
         example="notifications shop")
async def notifications_list(inv: Invocation[Services]) -> None:
    rows = await inv.services.db.run(
        lambda s: [queue.target_row(t) for t in _visible_targets(s, inv, inv.args.scope)])
    await inv.print_listing(rows, "No notifications; add one with: notifications:add TEAM|APP URL",
                            ["ID", "FOR", "URL", "EVENTS", "BY"],
                            [[r["id"], r["scope"], r["url"], ",".join(r["events"]) or "all", r["created_by"]]
                             for r in rows])


@command("notifications:remove", "Stop sending notifications to a target (its queued deliveries go too).",
         arg("id", type=int, metavar="ID", help="the target's id (see: notifications)"), access=ACCESS,
         mutating=True, example="notifications:remove 3")
async def notifications_remove(inv: Invocation[Services]) -> None:
    def remove(session: Session) -> str:
        target = next((t for t in _visible_targets(session, inv, None) if t.id == inv.args.id), None)
        if target is None:
            raise CommandError(f"there is no notification {inv.args.id} you may change; run: notifications")
        session.delete(target)
        return target.url

    url = await inv.services.db.run(remove)
    await inv.print(f"Notification {inv.args.id} removed; nothing more goes to {url}.")


@command("notifications:deliveries", "List recent notification deliveries: event, status, attempts, last result.",
         arg("scope", nargs="?", metavar="TEAM|APP", help="only this team's or app's targets"),
         arg("--limit", type=int, default=50, metavar="N", help="at most N, newest first (default 50)"),
         json=True, access=ACCESS, example="notifications:deliveries shop")
async def notifications_deliveries(inv: Invocation[Services]) -> None:
    limit = max(1, min(inv.args.limit, 1000))

    def load(session: Session) -> list[queue.DeliveryRow]:
        targets = [t.id for t in _visible_targets(session, inv, inv.args.scope)]
        return queue.deliveries(session, targets, limit)

    rows = await inv.services.db.run(load)
    await inv.print_listing(rows, "No deliveries yet.",
                            ["ID", "WHEN", "APP", "EVENT", "URL", "STATUS", "ATTEMPTS", "LAST RESULT", "NEXT"],
                            [[r["id"], r["created_at"], r["app"], r["event"], r["url"], r["status"], r["attempts"],
                              r["last_result"] or "-", r["next_attempt_at"] or "-"] for r in rows])
