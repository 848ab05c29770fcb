"""Teresa's tables. Schema changes go through Alembic migrations in core/migrations."""

from __future__ import annotations

from datetime import datetime, timezone

from typing import Any

from sqlalchemy import JSON, Boolean, Column, DateTime, ForeignKey, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def utc_text(moment: datetime) -> str:
    """A stored (naive UTC) moment in RFC 3339, whole seconds, as commands print it: 2025-01-31T12:00:00Z."""
    return moment.replace(microsecond=0).isoformat() + "Z"


class Base(DeclarativeBase):
    pass


team_members = Table(
    "team_members",
    Base.metadata,
    Column("team_id", ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)


class User(Base):
    __tablename__ = "users"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused (migration 0008)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(100), nullable=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    teams: Mapped[list["Team"]] = relationship(secondary=team_members, back_populates="members")
    keys: Mapped[list["SSHKey"]] = relationship(back_populates="user", cascade="all, delete-orphan")


class Team(Base):
    __tablename__ = "teams"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    members: Mapped[list[User]] = relationship(secondary=team_members, back_populates="teams")
    apps: Mapped[list["App"]] = relationship(back_populates="team")


class SSHKey(Base):
    __tablename__ = "ssh_keys"
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_ssh_keys_user_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(100), unique=True)
    public_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    user: Mapped[User] = relationship(back_populates="keys")


class App(Base):
    __tablename__ = "apps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    created_by: Mapped[str] = mapped_column(String(254), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    formation: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)  # type -> replicas the user asked for
    current_release: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the running version
    limits: Mapped[dict[str, dict[str, str]]] = mapped_column(JSON, default=dict)  # type (or "*") -> {"cpu": ..}
    autoscale: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)  # Autoscale
    tls_secret: Mapped[str] = mapped_column(String(253), default="", server_default="")  # domains:tls --secret

    team: Mapped[Team] = relationship(back_populates="apps")


class Build(Base):
    """One push that was built (or refused): who, which commit, outcome and duration."""

    __tablename__ = "builds"
    __table_args__ = (UniqueConstraint("app_id", "number", name="uq_builds_app_number"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per app
    user: Mapped[str] = mapped_column(String(254))
    ref: Mapped[str] = mapped_column(String(255))
    commit: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))  # running, succeeded, failed, cancelled, timed-out
    reason: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    app: Mapped[App] = relationship()

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class ConfigVar(Base):
    """The app's current config vars; each release keeps its own snapshot."""

    __tablename__ = "config_vars"
    __table_args__ = (UniqueConstraint("app_id", "name", name="uq_config_vars_app_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text)


class Domain(Base):
    __tablename__ = "domains"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    hostname: Mapped[str] = mapped_column(String(253), unique=True)
    verified: Mapped[bool] = mapped_column(Boolean, default=True)  # routes; False: waits for an admin
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Release(Base):
    """v1, v2, ...: a build plus config plus formation, who made it and why."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("app_id", "version", name="uq_releases_app_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    build_id: Mapped[str] = mapped_column(String(32))
    slug_key: Mapped[str] = mapped_column(String(255))
    # hex SHA-256 of the slug as stored when its build ended; "" for releases made before it was recorded
    slug_digest: Mapped[str] = mapped_column(String(64), default="", server_default="")
    processes: Mapped[dict[str, str]] = mapped_column(JSON)  # Procfile type -> command
    config: Mapped[dict[str, str]] = mapped_column(JSON)     # name -> value (secret: never logged)
    formation: Mapped[dict[str, int]] = mapped_column(JSON)  # type -> replicas
    teresa_yaml: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(String(255))  # push, config, scale, restart, rollback to vN
    user: Mapped[str] = mapped_column(String(254))
    status: Mapped[str] = mapped_column(String(20))   # deploying, succeeded, failed
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class NotificationTarget(Base):
    """Where a team's or an app's events go: an https URL (signed with `secret`) or `email:ADDRESS`."""

    __tablename__ = "notification_targets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), nullable=True, index=True)
    app_id: Mapped[int | None] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), nullable=True, index=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(64))  # HMAC key; shown once, never logged
    events: Mapped[list[str]] = mapped_column(JSON, default=list)  # event kinds; empty: all of them
    created_by: Mapped[str] = mapped_column(String(254), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    team: Mapped[Team | None] = relationship()
    app: Mapped[App | None] = relationship()


class NotificationDelivery(Base):
    """One event for one target: queued, retried with backoff, then delivered or given up."""

    __tablename__ = "notification_deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("notification_targets.id", ondelete="CASCADE"), index=True)
    app: Mapped[str] = mapped_column(String(63))
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)  # the exact JSON body that is signed and sent
    status: Mapped[str] = mapped_column(String(20), index=True)  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_result: Mapped[str] = mapped_column(String(255), default="")  # "HTTP 200", "connection refused", ...
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    target: Mapped[NotificationTarget] = relationship()


class AuditRecord(Base):
    """One mutating action: who, what, from where, when, and how it ended. Written once, never edited by a command.

    `actor`, `app` and `team_id` are copies, not foreign keys: the record outlives the user, app or team.
    `details` holds names only (config var names, refs, versions), never config values.
    """

    __tablename__ = "audit_records"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(254), index=True)
    action: Mapped[str] = mapped_column(String(64))
    app: Mapped[str | None] = mapped_column(String(63), nullable=True, index=True)
    team_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    address: Mapped[str] = mapped_column(String(64), default="")     # client address, or "local"
    credential: Mapped[str] = mapped_column(String(100), default="")  # key fingerprint, "password", "local", ...
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outcome: Mapped[str] = mapped_column(String(20))  # pending, succeeded, failed, denied
    reason: Mapped[str] = mapped_column(String(255), default="")


class DashboardSession(Base):
    """A dashboard login: one-time link tokens and browser sessions, stored as SHA-256 digests only."""

    __tablename__ = "dashboard_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(10))  # "link" (one use, a minute) or "session"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64), default="")
    credential: Mapped[str] = mapped_column(String(100), default="")  # how the user proved who they are
    # What the login stands on (migration 0011): the SSH key it was made with, or a stamp of the password hash.
    key_id: Mapped[int | None] = mapped_column(ForeignKey("ssh_keys.id", ondelete="CASCADE"), nullable=True,
                                               index=True)
    password_stamp: Mapped[str] = mapped_column(String(64), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


# Microseconds on MySQL/MariaDB too (their DATETIME keeps whole seconds unless told otherwise).
PreciseDateTime = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class Lease(Base):
    """Who holds a named piece of work (an app's deploy, a periodic job) until when; see core/leases.py."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(190), primary_key=True)  # deploy:<app>, periodic:<job>
    holder: Mapped[str] = mapped_column(String(254))  # the user who started the deploy, or the job
    replica: Mapped[str] = mapped_column(String(254))  # the Teresa process holding it
    token: Mapped[str] = mapped_column(String(32))  # proves the holder in renewals and the release
    since: Mapped[datetime] = mapped_column(PreciseDateTime)
    expires_at: Mapped[datetime] = mapped_column(PreciseDateTime)
