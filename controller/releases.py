"""Release records: reading them, numbering them, and turning one into a ReleaseSpec."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controller import teresa_yaml
from controller.spec import Autoscale, ReleaseSpec
from core.models import App, ConfigVar, Domain, Release


@dataclass(frozen=True)
class ReleaseFields:
    """What a new release is made of; every release-making action changes some of these."""

    build_id: str
    slug_key: str
    processes: dict[str, str]
    config: dict[str, str]
    formation: dict[str, int]
    teresa_yaml: str


def fields_of(release: Release) -> ReleaseFields:
    return ReleaseFields(release.build_id, release.slug_key, json.loads(release.processes),
                         json.loads(release.config), json.loads(release.formation), release.teresa_yaml)


def current_release(session: Session, app: App) -> Release | None:
    if app.current_release is None:
        return None
    return release_by_version(session, app, app.current_release)


def release_by_version(session: Session, app: App, version: int) -> Release | None:
    return session.scalar(select(Release).where(Release.app_id == app.id, Release.version == version))


def config_of(session: Session, app: App) -> dict[str, str]:
    return {v.name: v.value for v in session.scalars(select(ConfigVar).where(ConfigVar.app_id == app.id))}


def domains_of(session: Session, app: App) -> tuple[str, ...]:
    return tuple(session.scalars(select(Domain.hostname).where(Domain.app_id == app.id).order_by(Domain.hostname)))


def next_version(session: Session, app: App) -> int:
    return (session.scalar(select(func.max(Release.version)).where(Release.app_id == app.id)) or 0) + 1


def limits_of(app: App, processes: dict[str, str]) -> dict[str, dict[str, str]]:
    """Per-type limits; "*" (set without --type) applies to every type it does not name."""
    stored: dict[str, dict[str, str]] = json.loads(app.limits or "{}")
    everyone = stored.get("*", {})
    return {t: {**everyone, **stored.get(t, {})} for t in processes if everyone or t in stored}


def autoscale_of(app: App) -> Autoscale | None:
    return Autoscale(**json.loads(app.autoscale)) if app.autoscale else None


def to_spec(app: App, version: int, fields: ReleaseFields, reason: str, domains: tuple[str, ...]) -> ReleaseSpec:
    return ReleaseSpec(
        app=app.name, version=version, build_id=fields.build_id, slug_key=fields.slug_key, config=fields.config,
        processes=fields.processes, formation=fields.formation, spec=teresa_yaml.parse(fields.teresa_yaml or None),
        reason=reason, domains=domains, limits=limits_of(app, fields.processes), autoscale=autoscale_of(app),
    )


def record_spec(app: App, release: Release, domains: tuple[str, ...]) -> ReleaseSpec:
    return to_spec(app, release.version, fields_of(release), release.reason, domains)
