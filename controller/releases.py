"""Release records: reading them, numbering them, and turning one into a ReleaseSpec."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controller import teresa_yaml
from controller.spec import Autoscale, ReleaseSpec
from core.models import App, ConfigVar, Domain, Release

Limits = dict[str, dict[str, str]]  # process type (or "*" for all) -> {"cpu": .., "memory": ..}


@dataclass(frozen=True)
class ReleaseFields:
    """What a release is made of. Every release-making action is a `dataclasses.replace` of the current one.

    The build, processes, config and teresa.yaml are the release's own; formation, limits and
    autoscale are the app's settings as of this release, stored on the app once it succeeds.
    """

    build_id: str = ""
    slug_key: str = ""
    slug_digest: str = ""
    processes: dict[str, str] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)
    formation: dict[str, int] = field(default_factory=dict)
    teresa_yaml: str = ""
    limits: Limits = field(default_factory=dict)
    autoscale: dict[str, Any] | None = None


def current_fields(session: Session, app: App) -> ReleaseFields:
    """The current release's fields with the app's present settings; an empty build if nothing was released."""
    current = current_release(session, app)
    settings = ReleaseFields(formation=dict(app.formation or {}), limits=dict(app.limits or {}), autoscale=app.autoscale)
    if current is None:
        return dataclasses.replace(settings, config=config_of(session, app))
    return dataclasses.replace(fields_of(current), formation=settings.formation, limits=settings.limits,
                               autoscale=settings.autoscale)


def fields_of(release: Release) -> ReleaseFields:
    return ReleaseFields(build_id=release.build_id, slug_key=release.slug_key, slug_digest=release.slug_digest,
                         processes=dict(release.processes), config=dict(release.config),
                         formation=dict(release.formation), teresa_yaml=release.teresa_yaml)


def current_release(session: Session, app: App) -> Release | None:
    if app.current_release is None:
        return None
    return release_by_version(session, app, app.current_release)


def release_by_version(session: Session, app: App, version: int) -> Release | None:
    return session.scalar(select(Release).where(Release.app_id == app.id, Release.version == version))


def config_of(session: Session, app: App) -> dict[str, str]:
    return {v.name: v.value for v in session.scalars(select(ConfigVar).where(ConfigVar.app_id == app.id))}


def store_config(session: Session, app: App, config: dict[str, str]) -> None:
    existing = {v.name: v for v in session.scalars(select(ConfigVar).where(ConfigVar.app_id == app.id))}
    for name, var in existing.items():
        if name not in config:
            session.delete(var)
        else:
            var.value = config[name]
    session.add_all(ConfigVar(app_id=app.id, name=k, value=v) for k, v in config.items() if k not in existing)


def store_settings(session: Session, app: App, fields: ReleaseFields) -> None:
    """The app's own settings become those of `fields`: config vars, formation, limits, autoscale."""
    store_config(session, app, fields.config)
    app.formation, app.limits, app.autoscale = dict(fields.formation), dict(fields.limits), fields.autoscale


def domains_of(session: Session, app: App) -> tuple[str, ...]:
    """The custom domains that route to the app (approved ones, when approval is required)."""
    return tuple(session.scalars(select(Domain.hostname).where(Domain.app_id == app.id, Domain.verified)
                                 .order_by(Domain.hostname)))


def pending_domains_of(session: Session, app: App) -> tuple[str, ...]:
    """Custom domains waiting for an admin's approval (TERESA_REQUIRE_DOMAIN_VERIFICATION)."""
    return tuple(session.scalars(select(Domain.hostname).where(Domain.app_id == app.id, ~Domain.verified)
                                 .order_by(Domain.hostname)))


def next_version(session: Session, app: App) -> int:
    return (session.scalar(select(func.max(Release.version)).where(Release.app_id == app.id)) or 0) + 1


def limits_for(stored: Limits, processes: dict[str, str]) -> Limits:
    """Per-type limits; "*" (set without --type) applies to every type it does not name."""
    everyone = stored.get("*", {})
    return {t: {**everyone, **stored.get(t, {})} for t in processes if everyone or t in stored}


def to_spec(app: App, version: int, fields: ReleaseFields, reason: str, domains: tuple[str, ...]) -> ReleaseSpec:
    return ReleaseSpec(
        app=app.name, version=version, build_id=fields.build_id, slug_key=fields.slug_key, config=fields.config,
        processes=fields.processes, formation=fields.formation, spec=teresa_yaml.parse(fields.teresa_yaml or None),
        reason=reason, domains=domains, limits=limits_for(fields.limits, fields.processes),
        autoscale=Autoscale(**fields.autoscale) if fields.autoscale else None, tls_secret=app.tls_secret,
        slug_digest=fields.slug_digest,
    )


def record_spec(session: Session, app: App, release: Release) -> ReleaseSpec:
    """The spec of a stored release, run with the app's present settings."""
    fields = current_fields(session, app) if release.version == app.current_release else fields_of(release)
    return to_spec(app, release.version, fields, release.reason, domains_of(session, app))
