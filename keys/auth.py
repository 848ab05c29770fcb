"""Authentication: who is this public key, and is this the user's password?"""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.commands import Actor
from core.db import Database
from core.models import SSHKey, User
from keys import passwords


def _actor(user: User, fingerprint: str | None = None) -> Actor:
    return Actor(email=user.email, user_id=user.id, is_admin=user.is_admin, key_fingerprint=fingerprint)


async def actor_for_key(db: Database, fingerprint: str) -> Actor | None:
    def load(session: Session) -> Actor | None:
        key = session.scalar(select(SSHKey).where(SSHKey.fingerprint == fingerprint))
        return _actor(key.user, fingerprint) if key else None

    return await db.run(load)


async def actor_for_password(db: Database, email: str, password: str) -> Actor | None:
    def load(session: Session) -> tuple[Actor | None, str | None]:
        user = session.scalar(select(User).where(User.email == email.lower()))
        return (_actor(user), user.password_hash) if user else (None, None)

    actor, hashed = await db.run(load)
    ok = await asyncio.to_thread(passwords.check_password, password, hashed)
    return actor if ok and actor else None
