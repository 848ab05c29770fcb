"""App commands: create, list, inspect and destroy apps."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.platform import Platform
from core import names
from core.commands import APP, APP_TEAM, CommandError, Invocation, arg, command
from core.errors import UserError
from core.models import App, Team, utc_text
from keys import access


def _choose_team(session: Session, inv: Invocation[Platform]) -> Team:
    if inv.args.team:
        return access.team_for(session, inv.actor, inv.args.team)
    user = access.current_user(session, inv.actor)
    teams = user.teams if user else list(session.scalars(select(Team)))
    if len(teams) == 1:
        return teams[0]
    if not teams:
        raise CommandError("you are in no team; ask an admin to create one and add you (teams:add-user TEAM EMAIL).")
    listed = ", ".join(sorted(t.name for t in teams))
    raise CommandError(f"you are in several teams ({listed}); choose one with --team TEAM.")


@command("apps:create", "Create an app, owned by a team.", APP,
         arg("--team", metavar="TEAM", help="the owning team (default: your only team)"),
         access="members of the team, and admins", example="apps:create myapp --team web", mutating=True)
async def apps_create(inv: Invocation[Platform]) -> None:
    name = names.app_name(inv.args.app)

    def save(session: Session) -> str:
        team = _choose_team(session, inv)
        if session.scalar(select(App).where(App.name == name)) is not None:
            raise CommandError(f"app '{name}' already exists; choose another name.")
        session.add(App(name=name, team=team, created_by=inv.actor.email))
        return team.name

    team = await inv.services.db.run(save)
    try:
        await inv.services.controller.created(name, inv.actor)
    except UserError:  # e.g. the cluster has a namespace of that name that is not Teresa's
        await inv.services.db.run(lambda session: session.delete(access.find_app(session, name)))
        raise
    await inv.print(f"App {name} created for team {team}.")
    await inv.print(f"Push to deploy: git remote add teresa {inv.services.git_remote(name)} && git push teresa main")


@command("apps:list", "List the apps you may act on.", json=True, access=APP_TEAM, example="apps:list")
async def apps_list(inv: Invocation[Platform]) -> None:
    def load(session: Session) -> list[dict[str, str]]:
        return [{"name": a.name, "team": a.team.name} for a in access.visible_apps(session, inv.actor)]

    apps = await inv.services.db.run(load)
    await inv.print_listing(apps, "No apps; create one with: apps:create APP",
                            ["APP", "TEAM"], [[a["name"], a["team"]] for a in apps])


@command("apps:info", "Show an app's team, address and state.", APP, json=True,
         access=APP_TEAM, example="apps:info myapp")
async def apps_info(inv: Invocation[Platform]) -> None:
    def load(session: Session) -> dict[str, str]:
        app = access.app_for(session, inv.actor, inv.args.app)
        return {"name": app.name, "team": app.team.name, "created_by": app.created_by,
                "created_at": utc_text(app.created_at)}

    info = await inv.services.db.run(load)
    info["git_remote"] = inv.services.git_remote(info["name"])
    info.update(await inv.services.controller.info(info["name"]))
    if inv.args.json:
        await inv.print_json(info)
        return
    for key, value in info.items():
        await inv.print(f"{key + ':':<12} {value}")


@command("apps:destroy", "Destroy an app: its processes, releases, builds and repository.",
         APP, arg("--confirm", metavar="APP", required=True, help="the app's name again"),
         access=APP_TEAM, example="apps:destroy myapp --confirm myapp", mutating=True)
async def apps_destroy(inv: Invocation[Platform]) -> None:
    name = names.app_name(inv.args.app)
    if inv.args.confirm != name:
        raise CommandError(f"--confirm must repeat the app's name; run: apps:destroy {name} --confirm {name}")
    await inv.services.db.run(lambda session: access.app_for(session, inv.actor, name))
    await inv.services.controller.destroy(name, inv.actor, lambda session: session.delete(access.find_app(session, name)))
    await inv.print(f"App {name} destroyed.")
