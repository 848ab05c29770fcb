"""Authentication: who is this public key, is this the user's password, and is this session's
user still who it was when it logged in?"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.commands import Actor, CommandError
from core.db import Database
from core.models import SSHKey, User
from keys import passwords
from keys.passwords import Door
from keys.ratelimit import LoginLimiter


class SessionRevoked(CommandError):
    """The session's user or key is gone: the connection may run nothing more."""


def _actor(user: User, fingerprint: str | None = None) -> Actor:
    return Actor(email=user.email, user_id=user.id, is_admin=user.is_admin, key_fingerprint=fingerprint)


async def actor_for_key(db: Database, fingerprint: str) -> Actor | None:
    def load(session: Session) -> Actor | None:
        key = session.scalar(select(SSHKey).where(SSHKey.fingerprint == fingerprint))
        return _actor(key.user, fingerprint) if key else None

    return await db.run(load)


@dataclass(frozen=True)
class PasswordLogin:
    """How a password login went: the actor when it was right, the sentence when it was not even checked."""

    actor: Actor | None = None
    stamp: str = ""  # passwords.stamp of the hash that matched: a session made with it ends when it changes
    refused: str = ""


async def password_login(db: Database, limiter: LoginLimiter, *, door: Door, address: str, email: str,
                         password: str) -> PasswordLogin:
    """Check a password within the login budget, on this door's bcrypt threads."""
    with limiter.password_attempt(door=door, address=address, user=email.lower()) as attempt:
        if attempt.refused:
            return PasswordLogin(refused=attempt.refused)
        login = await _check_password(db, email, password, door)
        if login.actor is not None:
            attempt.succeeded()
        return login


async def _check_password(db: Database, email: str, password: str, door: Door) -> PasswordLogin:
    def load(session: Session) -> tuple[Actor | None, str | None]:
        user = session.scalar(select(User).where(User.email == email.lower()))
        return (_actor(user), user.password_hash) if user else (None, None)

    actor, hashed = await db.run(load)
    ok = await passwords.matches(password, hashed, door=door)
    return PasswordLogin(actor, passwords.stamp(hashed)) if ok and actor else PasswordLogin()


def current_actor(session: Session, actor: Actor) -> Actor:
    """The session's user as the database has it now (admin flag included); SessionRevoked if the
    user was deleted or the key the session logged in with was removed."""
    if actor.superuser:
        return actor
    user = session.get(User, actor.user_id) if actor.user_id is not None else None
    if user is None or user.email != actor.email:
        raise SessionRevoked(f"the account {actor.email} was deleted; this connection can run nothing more, "
                             "ask an admin if you need access again.")
    if actor.key_fingerprint is not None:
        key = session.scalar(select(SSHKey).where(SSHKey.fingerprint == actor.key_fingerprint))
        if key is None or key.user_id != user.id:
            raise SessionRevoked("the SSH key this connection logged in with was removed; "
                                 "reconnect with a key that is registered (keys:list).")
    return dataclasses.replace(_actor(user, actor.key_fingerprint), address=actor.address, via=actor.via)
