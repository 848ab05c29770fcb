"""Dashboard logins: one-time links (a minute, one use) and browser sessions, kept as SHA-256 digests.

A session belongs to a user row (deleted with it: ON DELETE CASCADE), expires
after SESSION_LIFETIME, and carries its own CSRF token for the forms that act.
It also stands on the credential it came from, and ends with it: the SSH key
`dashboard:login` ran with (deleted with the key: ON DELETE CASCADE, and
checked at each lookup), or the password (a stamp of its hash: a new password,
or none, ends the session). What the session may see and do is read from the
database at each request, as for an SSH command.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.commands import Actor
from core.models import DashboardSession, SSHKey, User, utcnow
from keys import passwords

LINK_LIFETIME = dt.timedelta(minutes=1)
SESSION_LIFETIME = dt.timedelta(hours=12)
LINK, SESSION = "link", "session"
PASSWORD = "password"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class Credential:
    """What a login stands on: an SSH key (its row), or the password whose hash has this stamp."""

    label: str  # for the audit log: the key's fingerprint, or "password"
    key_id: int | None = None
    password_stamp: str = ""


@dataclass(frozen=True)
class Login:
    """A live session: who, and the CSRF token its forms carry."""

    user_id: int
    email: str
    is_admin: bool
    csrf: str
    credential: str


def password_credential(stamp: str) -> Credential:
    return Credential(PASSWORD, password_stamp=stamp)


def credential_of(session: Session, actor: Actor) -> Credential | None:
    """The credential an SSH session's actor logged in with, or None when it is gone."""
    if actor.key_fingerprint is None:
        user = session.get(User, actor.user_id)
        stamp = passwords.stamp(user.password_hash) if user else ""
        return password_credential(stamp) if stamp else None
    key = session.scalar(select(SSHKey).where(SSHKey.fingerprint == actor.key_fingerprint,
                                              SSHKey.user_id == actor.user_id))
    return Credential(actor.key_fingerprint, key_id=key.id) if key else None


def _create(session: Session, kind: str, user_id: int, credential: Credential, lifetime: dt.timedelta) -> str:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(DashboardSession(digest=_digest(token), kind=kind, user_id=user_id, credential=credential.label[:100],
                                 key_id=credential.key_id, password_stamp=credential.password_stamp,
                                 csrf=secrets.token_urlsafe(32) if kind == SESSION else "",
                                 created_at=now, expires_at=now + lifetime))
    return token


def new_link(session: Session, user_id: int, credential: Credential) -> str:
    """A one-time login link's token for this user."""
    session.execute(delete(DashboardSession).where(DashboardSession.expires_at < utcnow()))  # tidy as we go
    return _create(session, LINK, user_id, credential, LINK_LIFETIME)


def new_session(session: Session, user_id: int, credential: Credential) -> str:
    return _create(session, SESSION, user_id, credential, SESSION_LIFETIME)


def _holds(session: Session, row: DashboardSession, user: User) -> bool:
    """The credential the row was made with is still the user's."""
    if row.key_id is not None:
        key = session.get(SSHKey, row.key_id)
        return key is not None and key.user_id == user.id
    current = passwords.stamp(user.password_hash)
    return bool(row.password_stamp) and hmac.compare_digest(row.password_stamp, current)


def _live(session: Session, token: str, kind: str) -> tuple[DashboardSession, User] | None:
    """The unexpired row of this kind and its user, while its credential holds; a row whose credential
    is gone is deleted."""
    row = session.scalar(select(DashboardSession).where(DashboardSession.digest == _digest(token),
                                                        DashboardSession.kind == kind))
    if row is None or row.expires_at < utcnow():
        return None
    user = session.get(User, row.user_id)
    if user is None or not _holds(session, row, user):
        session.delete(row)
        return None
    return row, user


def link_owner(session: Session, token: str) -> str | None:
    """The email of the user a link logs in, or None when it is unknown, used or expired (the link stays)."""
    found = _live(session, token, LINK)
    return found[1].email if found else None


def redeem_link(session: Session, token: str) -> tuple[str, User] | None:
    """Use a link once: a new session token and its user, or None when unknown, used or expired."""
    found = _live(session, token, LINK)
    if found is None:
        return None
    row, user = found
    session.delete(row)  # one use
    credential = Credential(row.credential, key_id=row.key_id, password_stamp=row.password_stamp)
    return new_session(session, user.id, credential), user


def lookup(session: Session, token: str) -> Login | None:
    found = _live(session, token, SESSION)
    if found is None:
        return None
    row, user = found
    return Login(user_id=user.id, email=user.email, is_admin=user.is_admin, csrf=row.csrf, credential=row.credential)


def end(session: Session, token: str) -> None:
    session.execute(delete(DashboardSession).where(DashboardSession.digest == _digest(token)))


def csrf_ok(expected: str, offered: str) -> bool:
    return bool(expected) and bool(offered) and hmac.compare_digest(expected.encode(),
                                                                    offered.encode("utf-8", "replace"))
