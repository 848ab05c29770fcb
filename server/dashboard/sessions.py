"""Dashboard logins: one-time links (a minute, one use) and browser sessions, kept as SHA-256 digests.

A session belongs to a user row (deleted with it: ON DELETE CASCADE), expires
after SESSION_LIFETIME, and carries its own CSRF token for the forms that act.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.models import DashboardSession, User, utcnow

LINK_LIFETIME = dt.timedelta(minutes=1)
SESSION_LIFETIME = dt.timedelta(hours=12)
LINK, SESSION = "link", "session"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class Login:
    """A live session: who, and the CSRF token its forms carry."""

    user_id: int
    email: str
    is_admin: bool
    csrf: str
    credential: str


def _create(session: Session, kind: str, user_id: int, credential: str, lifetime: dt.timedelta) -> str:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(DashboardSession(digest=_digest(token), kind=kind, user_id=user_id, credential=credential[:100],
                                 csrf=secrets.token_urlsafe(32) if kind == SESSION else "",
                                 created_at=now, expires_at=now + lifetime))
    return token


def new_link(session: Session, user_id: int, credential: str) -> str:
    """A one-time login link's token for this user."""
    session.execute(delete(DashboardSession).where(DashboardSession.expires_at < utcnow()))  # tidy as we go
    return _create(session, LINK, user_id, credential, LINK_LIFETIME)


def new_session(session: Session, user_id: int, credential: str) -> str:
    return _create(session, SESSION, user_id, credential, SESSION_LIFETIME)


def redeem_link(session: Session, token: str) -> tuple[str, User] | None:
    """Use a link once: a new session token and its user, or None when unknown, used or expired."""
    row = session.scalar(select(DashboardSession).where(DashboardSession.digest == _digest(token),
                                                        DashboardSession.kind == LINK))
    if row is None:
        return None
    session.delete(row)  # one use, whatever happens next
    user = session.get(User, row.user_id)
    if row.expires_at < utcnow() or user is None:
        return None
    return new_session(session, user.id, row.credential), user


def lookup(session: Session, token: str) -> Login | None:
    row = session.scalar(select(DashboardSession).where(DashboardSession.digest == _digest(token),
                                                        DashboardSession.kind == SESSION))
    if row is None or row.expires_at < utcnow():
        return None
    user = session.get(User, row.user_id)
    if user is None:
        return None
    return Login(user_id=user.id, email=user.email, is_admin=user.is_admin, csrf=row.csrf, credential=row.credential)


def end(session: Session, token: str) -> None:
    session.execute(delete(DashboardSession).where(DashboardSession.digest == _digest(token)))


def csrf_ok(login: Login, offered: str) -> bool:
    return bool(offered) and hmac.compare_digest(login.csrf.encode(), offered.encode("utf-8", "replace"))
