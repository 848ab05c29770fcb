"""Teresa's tables. Schema changes go through Alembic migrations in core/migrations."""

from __future__ import annotations

from datetime import datetime, timezone

from typing import Any

from sqlalchemy import JSON, Boolean, Column, DateTime, ForeignKey, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


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
    processes: Mapped[dict[str, str]] = mapped_column(JSON)  # Procfile type -> command
    config: Mapped[dict[str, str]] = mapped_column(JSON)     # name -> value (secret: never logged)
    formation: Mapped[dict[str, int]] = mapped_column(JSON)  # type -> replicas
    teresa_yaml: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(String(255))  # push, config, scale, restart, rollback to vN
    user: Mapped[str] = mapped_column(String(254))
    status: Mapped[str] = mapped_column(String(20))   # deploying, succeeded, failed
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


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
