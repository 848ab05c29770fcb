"""Authorization, in one place: may this actor do this to this app, team or user?

Admins (and the local operator) may do anything. A user may act on the apps of
the teams they belong to, on those teams' membership, and on their own keys and
password.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import names
from core.commands import Actor, CommandError, PermissionDenied
from core.models import App, Team, User


def require_admin(actor: Actor, what: str) -> None:
    if not actor.is_admin:
        raise PermissionDenied(f"permission denied: only admins may {what}.")


def current_user(session: Session, actor: Actor) -> User | None:
    if actor.user_id is None:
        return None
    return session.get(User, actor.user_id)


def member_team_ids(session: Session, actor: Actor) -> set[int]:
    user = current_user(session, actor)
    return {team.id for team in user.teams} if user else set()


def _no_such_app(name: str) -> CommandError:
    return CommandError(f"app '{name}' does not exist; create it with: apps:create {name}")


def find_app(session: Session, name: str) -> App:
    names.app_name(name)
    app = session.scalar(select(App).where(App.name == name))
    if app is None:
        raise _no_such_app(name)
    return app


def app_for(session: Session, actor: Actor, name: str) -> App:
    """The app named `name`, if the actor may act on it.

    To anyone outside its team an app answers exactly as one that does not exist:
    its name, team and existence are its team's business.
    """
    app = find_app(session, name)
    if not actor.is_admin and app.team_id not in member_team_ids(session, actor):
        # The user's sentence is a missing app's; the audit log still records the refusal as denied.
        raise PermissionDenied(str(_no_such_app(name)))
    return app


def find_team(session: Session, name: str) -> Team:
    names.team_name(name)
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        raise CommandError(f"team '{name}' does not exist; an admin can create it with: teams:create {name}")
    return team


def team_for(session: Session, actor: Actor, name: str) -> Team:
    """The team named `name`, if the actor is an admin or one of its members."""
    team = find_team(session, name)
    if not actor.is_admin and team.id not in member_team_ids(session, actor):
        raise PermissionDenied(f"permission denied for team '{name}': you are not one of its members.")
    return team


def find_user(session: Session, email: str) -> User:
    user = session.scalar(select(User).where(User.email == names.email(email)))
    if user is None:
        raise CommandError(f"user '{email}' does not exist; an admin can create it with: users:create {email}")
    return user


def visible_apps(session: Session, actor: Actor) -> list[App]:
    query = select(App).order_by(App.name)
    if not actor.is_admin:
        query = query.where(App.team_id.in_(member_team_ids(session, actor)))
    return list(session.scalars(query))
