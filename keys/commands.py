"""Commands for identity: who am I, passwords, SSH keys, users and teams."""

from __future__ import annotations

import asyncio
from typing import NotRequired, TypedDict

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import names
from core.commands import ADMIN, TEAM, CommandError, Invocation, arg, command
from core.services import Services
from core.models import SSHKey, Team, User, utc_text
from keys import access, passwords, sshkeys

STDIN_LIMIT = 64 * 1024


class _WhoAmI(TypedDict):
    """`whoami --json`."""
    email: str
    admin: bool
    teams: list[str]
    name: NotRequired[str]
    key: NotRequired[str | None]
    superuser: NotRequired[bool]


class _UserInfo(TypedDict):
    """One user of `users:list --json`."""
    email: str
    name: str
    admin: bool
    teams: list[str]
    keys: int
    password: bool


class _TeamInfo(TypedDict):
    """One team of `teams:list --json`."""
    name: str
    members: list[str]
    apps: list[str]


# --- who am I, passwords -------------------------------------------------------------


@command("whoami", "Show who you are logged in as, and your teams.", json=True, example="whoami")
async def whoami(inv: Invocation[Services]) -> None:
    def load(session: Session) -> _WhoAmI:
        user = access.current_user(session, inv.actor)
        if user is None:
            return {"email": inv.actor.email, "admin": True, "teams": [], "superuser": True}
        return {"email": user.email, "name": user.name, "admin": user.is_admin,
                "teams": sorted(t.name for t in user.teams), "key": inv.actor.key_fingerprint}

    info = await inv.services.db.run(load)
    if inv.args.json:
        await inv.print_json(info)
        return
    role = " (local superuser)" if info.get("superuser") else " (admin)" if info["admin"] else ""
    await inv.print(f"{info['email']}{role}")
    if info["teams"]:
        await inv.print(f"teams: {', '.join(info['teams'])}")


async def _read_password(inv: Invocation[Services]) -> str:
    return passwords.from_stdin(await inv.stdin.read(1024))


@command("passwd", "Set your own password (the new password on stdin).", stdin="the new password",
         example="echo 'new-secret-password' | ssh -p 2222 git@teresa passwd", mutating=True)
async def passwd(inv: Invocation[Services]) -> None:
    if inv.actor.user_id is None:
        raise CommandError("the local operator has no password; use users:set-password EMAIL for a user.")
    hashed = await passwords.hashed(await _read_password(inv))

    def save(session: Session) -> None:
        user = access.current_user(session, inv.actor)
        if user is None:
            raise CommandError("your account was deleted meanwhile; ask an admin.")
        user.password_hash = hashed

    await inv.services.db.run(save)
    await inv.print("Password changed.")


# --- SSH keys ---------------------------------------------------------------------------


def _key_owner(session: Session, inv: Invocation[Services]) -> User:
    email = getattr(inv.args, "user", None)
    if email:
        user = access.find_user(session, email)
        if user.id != inv.actor.user_id:
            access.require_admin(inv.actor, "manage another user's keys")
        return user
    current = access.current_user(session, inv.actor)
    if current is None:
        raise CommandError("name the user whose keys these are with --user EMAIL.")
    return current


USER_FLAG = arg("--user", metavar="EMAIL", help="whose keys (admins and the local operator)")


@command("keys:add", "Register an SSH public key (on stdin) under a name.",
         arg("name", metavar="NAME", help="a name for the key, like laptop"), USER_FLAG,
         stdin="the public key (the .pub file)",
         example="ssh -p 2222 git@teresa keys:add laptop < ~/.ssh/id_ed25519.pub", mutating=True)
async def keys_add(inv: Invocation[Services]) -> None:
    name = names.key_name(inv.args.name)
    public_key, fingerprint = sshkeys.parse_public_key(await inv.stdin.read(sshkeys.MAX_KEY_BYTES + 1))

    def save(session: Session) -> str:
        owner = _key_owner(session, inv)
        existing = session.scalar(select(SSHKey).where(SSHKey.fingerprint == fingerprint))
        if existing is not None:
            if existing.user_id == owner.id:
                raise CommandError(f"this key is already registered as '{existing.name}'; nothing to do.")
            raise CommandError("this key is already registered to another user; each key belongs to one user, "
                               "so generate a new key with ssh-keygen.")
        if any(k.name == name for k in owner.keys):
            raise CommandError(f"you already have a key named '{name}'; remove it first or pick another name.")
        session.add(SSHKey(user=owner, name=name, fingerprint=fingerprint, public_key=public_key))
        return owner.email

    try:
        email = await inv.services.db.run(save)
    except IntegrityError:
        raise CommandError("this key or key name was registered at the same moment; run keys:list and retry.") from None
    await inv.print(f"Key '{name}' ({fingerprint}) added for {email}.")


@command("keys:list", "List your SSH keys.", USER_FLAG, json=True, example="keys:list")
async def keys_list(inv: Invocation[Services]) -> None:
    def load(session: Session) -> list[dict[str, str]]:
        owner = _key_owner(session, inv)
        return [{"name": k.name, "fingerprint": k.fingerprint, "added": utc_text(k.created_at)}
                for k in sorted(owner.keys, key=lambda k: k.name)]

    keys = await inv.services.db.run(load)
    await inv.print_listing(keys, "No keys; add one with: keys:add NAME < ~/.ssh/id_ed25519.pub",
                            ["NAME", "FINGERPRINT", "ADDED"],
                            [[k["name"], k["fingerprint"], k["added"]] for k in keys])


@command("keys:remove", "Remove one of your SSH keys.", arg("name", metavar="NAME", help="the key's name"), USER_FLAG,
         example="keys:remove laptop", mutating=True)
async def keys_remove(inv: Invocation[Services]) -> None:
    name = names.key_name(inv.args.name)

    def remove(session: Session) -> None:
        owner = _key_owner(session, inv)
        key = next((k for k in owner.keys if k.name == name), None)
        if key is None:
            raise CommandError(f"there is no key named '{name}'; run keys:list to see your keys.")
        session.delete(key)

    await inv.services.db.run(remove)
    await inv.print(f"Key '{name}' removed.")


# --- users (admins) ---------------------------------------------------------------------


@command("users:create", "Create a user (the password on stdin, unless --no-password).",
         arg("email", metavar="EMAIL", help="the new user's email"), arg("--name", default="", help="the user's full name"),
         arg("--admin", action="store_true", help="make the user an admin"),
         arg("--no-password", action="store_true", help="a key-only user: read no password"),
         access=ADMIN, stdin="the password",
         example="echo 'a-long-password' | ssh -p 2222 git@teresa users:create alice@example.com --name Alice", mutating=True)
async def users_create(inv: Invocation[Services]) -> None:
    access.require_admin(inv.actor, "create users")
    email = names.email(inv.args.email)
    full_name = inv.args.name.strip()
    if len(full_name) > 200 or any(not c.isprintable() for c in full_name):
        raise CommandError("the name must be at most 200 printable characters.")
    hashed = None
    if not inv.args.no_password:
        hashed = await passwords.hashed(await _read_password(inv))

    def save(session: Session) -> None:
        if session.scalar(select(User).where(User.email == email)) is not None:
            raise CommandError(f"user '{email}' already exists.")
        session.add(User(email=email, name=full_name, password_hash=hashed, is_admin=inv.args.admin))

    try:
        await inv.services.db.run(save)
    except IntegrityError:
        raise CommandError(f"user '{email}' already exists.") from None
    await inv.print(f"User {email} created{' (admin)' if inv.args.admin else ''}.")


@command("users:list", "List users.", access=ADMIN, json=True, example="users:list")
async def users_list(inv: Invocation[Services]) -> None:
    access.require_admin(inv.actor, "list users")

    def load(session: Session) -> list[_UserInfo]:
        return [{"email": u.email, "name": u.name, "admin": u.is_admin, "teams": sorted(t.name for t in u.teams),
                 "keys": len(u.keys), "password": u.password_hash is not None}
                for u in session.scalars(select(User).order_by(User.email))]

    users = await inv.services.db.run(load)
    if inv.args.json:
        await inv.print_json(users)
        return
    await inv.print_table(["EMAIL", "NAME", "ADMIN", "TEAMS", "KEYS"],
                          [[u["email"], u["name"], "yes" if u["admin"] else "", ",".join(u["teams"]), u["keys"]]
                           for u in users])


@command("users:delete", "Delete a user and their keys.", arg("email", metavar="EMAIL", help="the user's email"), access=ADMIN,
         example="users:delete alice@example.com", mutating=True)
async def users_delete(inv: Invocation[Services]) -> None:
    access.require_admin(inv.actor, "delete users")

    def remove(session: Session) -> str:
        user = access.find_user(session, inv.args.email)
        if user.id == inv.actor.user_id:
            raise CommandError("you cannot delete your own account; ask another admin.")
        session.delete(user)
        return user.email

    await inv.print(f"User {await inv.services.db.run(remove)} deleted.")


@command("users:set-password", "Set a user's password (on stdin).", arg("email", metavar="EMAIL", help="the user's email"), access=ADMIN,
         stdin="the new password", example="echo 'a-long-password' | teresa users:set-password alice@example.com", mutating=True)
async def users_set_password(inv: Invocation[Services]) -> None:
    access.require_admin(inv.actor, "set other users' passwords")
    hashed = await passwords.hashed(await _read_password(inv))

    def save(session: Session) -> str:
        user = access.find_user(session, inv.args.email)
        user.password_hash = hashed
        return user.email

    await inv.print(f"Password of {await inv.services.db.run(save)} changed.")


# --- teams ------------------------------------------------------------------------------


@command("teams:create", "Create a team.", arg("team", metavar="TEAM", help="the new team's name"), access=ADMIN, example="teams:create web", mutating=True)
async def teams_create(inv: Invocation[Services]) -> None:
    access.require_admin(inv.actor, "create teams")
    name = names.team_name(inv.args.team)

    def save(session: Session) -> None:
        if session.scalar(select(Team).where(Team.name == name)) is not None:
            raise CommandError(f"team '{name}' already exists.")
        session.add(Team(name=name))

    try:
        await inv.services.db.run(save)
    except IntegrityError:
        raise CommandError(f"team '{name}' already exists.") from None
    await inv.print(f"Team {name} created.")


@command("teams:list", "List your teams (admins: all teams) with their members.", json=True,
         example="teams:list")
async def teams_list(inv: Invocation[Services]) -> None:
    def load(session: Session) -> list[_TeamInfo]:
        query = select(Team).order_by(Team.name)
        if not inv.actor.is_admin:
            query = query.where(Team.id.in_(access.member_team_ids(session, inv.actor)))
        return [{"name": t.name, "members": sorted(u.email for u in t.members), "apps": sorted(a.name for a in t.apps)}
                for t in session.scalars(query)]

    teams = await inv.services.db.run(load)
    await inv.print_listing(teams, "No teams.",
                            ["TEAM", "MEMBERS", "APPS"],
                            [[t["name"], ",".join(t["members"]), ",".join(t["apps"])] for t in teams])


TEAM_USER = (arg("team", metavar="TEAM", help="the team's name"), arg("email", metavar="EMAIL", help="the user's email"))


@command("teams:add-user", "Add a user to a team.", *TEAM_USER, access=TEAM,
         example="teams:add-user web alice@example.com", mutating=True)
async def teams_add_user(inv: Invocation[Services]) -> None:
    def save(session: Session) -> tuple[str, str]:
        team = access.team_for(session, inv.actor, inv.args.team)
        user = access.find_user(session, inv.args.email)
        if user in team.members:
            raise CommandError(f"{user.email} is already a member of team '{team.name}'.")
        team.members.append(user)
        return user.email, team.name

    email, team = await inv.services.db.run(save)
    await inv.print(f"{email} added to team {team}.")


@command("teams:remove-user", "Remove a user from a team.", *TEAM_USER, access=TEAM,
         example="teams:remove-user web alice@example.com", mutating=True)
async def teams_remove_user(inv: Invocation[Services]) -> None:
    def save(session: Session) -> tuple[str, str]:
        team = access.team_for(session, inv.actor, inv.args.team)
        user = access.find_user(session, inv.args.email)
        if user not in team.members:
            raise CommandError(f"{user.email} is not a member of team '{team.name}'.")
        team.members.remove(user)
        return user.email, team.name

    email, team = await inv.services.db.run(save)
    await inv.print(f"{email} removed from team {team}.")


