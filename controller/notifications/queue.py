"""Notification targets and the delivery queue, in the database (so deliveries survive restarts).

Functions take a Session and run inside `Database.run`. A delivery is claimed
by moving its next attempt past the attempt's timeout (a lease): a server that
dies mid-delivery leaves it to be tried again, and two servers sharing the
database do not both send it. Claims are fair between teams: at most `per_team`
deliveries of one team are in flight at a time, so one team's slow receivers
cannot hold every slot.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, TypedDict

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session

from controller.events import Event
from core.models import App, NotificationDelivery, NotificationTarget, utc_text, utcnow

RESULT_LIMIT = 255


class TargetRow(TypedDict):
    """One target of `notifications --json`."""
    id: int
    scope: str          # "app shop" or "team web"
    url: str
    events: list[str]   # empty: every event
    created_by: str
    created_at: str


class DeliveryRow(TypedDict):
    """One delivery of `notifications:deliveries --json`."""
    id: int
    created_at: str
    app: str
    event: str
    url: str
    status: str         # pending, delivered, failed
    attempts: int
    last_result: str
    next_attempt_at: str | None


@dataclass(frozen=True)
class Claimed:
    """A delivery taken from the queue for one attempt."""
    id: int
    url: str
    secret: str
    event: str
    payload: str
    attempts: int       # before this one
    team: int | None = None  # whose delivery it is (the target's team, or its app's)


def timestamp(moment: dt.datetime | None) -> str | None:
    return None if moment is None else utc_text(moment)


def add_target(session: Session, *, team_id: int | None, app_id: int | None, url: str, events: list[str],
               created_by: str) -> tuple[int, str]:
    """Store a target with a fresh HMAC secret; returns (id, secret)."""
    secret = secrets.token_hex(32)
    target = NotificationTarget(team_id=team_id, app_id=app_id, url=url, secret=secret, events=events,
                                created_by=created_by)
    session.add(target)
    session.flush()
    return target.id, secret


def scope_of(target: NotificationTarget) -> str:
    return f"app {target.app.name}" if target.app is not None else f"team {target.team.name if target.team else '?'}"


def target_row(target: NotificationTarget) -> TargetRow:
    return {"id": target.id, "scope": scope_of(target), "url": target.url, "events": list(target.events),
            "created_by": target.created_by, "created_at": timestamp(target.created_at) or ""}


def targets_for(session: Session, *, team_ids: set[int] | None, app_ids: set[int] | None) -> list[NotificationTarget]:
    """Targets of these teams or apps (None: no restriction on that side, both None: all)."""
    query = select(NotificationTarget).order_by(NotificationTarget.id)
    if team_ids is not None or app_ids is not None:
        query = query.where(or_(NotificationTarget.team_id.in_(team_ids or set()),
                                NotificationTarget.app_id.in_(app_ids or set())))
    return list(session.scalars(query))


def enqueue(session: Session, event: Event) -> int:
    """A pending delivery of `event` to each target of its app or the app's team that wants it."""
    app = session.scalar(select(App).where(App.name == event.app))
    if app is None:  # destroyed meanwhile
        return 0
    payload = json.dumps(event.to_json(), sort_keys=True, separators=(",", ":"))
    count = 0
    for target in targets_for(session, team_ids={app.team_id}, app_ids={app.id}):
        if target.events and event.kind.value not in target.events:
            continue
        session.add(NotificationDelivery(target_id=target.id, app=event.app, event=event.kind.value,
                                         payload=payload, status="pending", attempts=0, last_result=""))
        count += 1
    return count


def _due_by_team(now: dt.datetime, skip: set[int], per_team: int) -> Select[NotificationDelivery, int | None]:
    """Due deliveries with their team, the first `per_team` of each team only, oldest first."""
    team = func.coalesce(NotificationTarget.team_id, App.team_id)
    order = (NotificationDelivery.next_attempt_at, NotificationDelivery.id)
    ranked = (select(NotificationDelivery.id, team.label("team"),
                     func.row_number().over(partition_by=team, order_by=order).label("rank"))
              .join(NotificationTarget, NotificationDelivery.target_id == NotificationTarget.id)
              .outerjoin(App, NotificationTarget.app_id == App.id)
              .where(NotificationDelivery.status == "pending", NotificationDelivery.next_attempt_at <= now,
                     NotificationDelivery.id.not_in(skip))
              .subquery())
    return (select(NotificationDelivery, ranked.c.team).join(ranked, ranked.c.id == NotificationDelivery.id)
            .where(ranked.c.rank <= per_team).order_by(*order))


def claim_due(session: Session, *, now: dt.datetime, lease: dt.timedelta, limit: int, skip: set[int],
              busy: Mapping[int | None, int], per_team: int) -> list[Claimed]:
    """Up to `limit` due deliveries, none beyond `per_team` in flight for a team (`busy`: in flight already)."""
    taken = Counter(busy)
    claimed: list[Claimed] = []
    for delivery, team in session.execute(_due_by_team(now, skip, per_team)).all():
        if len(claimed) >= limit:
            break
        if taken[team] >= per_team:
            continue
        moved = session.execute(
            update(NotificationDelivery)
            .where(NotificationDelivery.id == delivery.id,
                   NotificationDelivery.next_attempt_at == delivery.next_attempt_at)
            .values(next_attempt_at=now + lease)
            .execution_options(synchronize_session=False))
        if moved.rowcount == 1:  # type: ignore[attr-defined]  # a CursorResult for an UPDATE
            taken[team] += 1
            claimed.append(Claimed(delivery.id, delivery.target.url, delivery.target.secret, delivery.event,
                                   delivery.payload, delivery.attempts, team))
    return claimed


def record(session: Session, delivery_id: int, *, ok: bool, result: str, retry_at: dt.datetime | None) -> str:
    """Note one attempt's outcome; `retry_at` None after a failure means give up. Returns the new status."""
    delivery = session.get(NotificationDelivery, delivery_id)
    if delivery is None:  # its target was removed meanwhile
        return "gone"
    delivery.attempts += 1
    delivery.last_result = result[:RESULT_LIMIT]
    if ok or retry_at is None:
        delivery.status, delivery.finished_at = ("delivered" if ok else "failed"), utcnow()
    else:
        delivery.next_attempt_at = retry_at
    return delivery.status


def next_due(session: Session) -> dt.datetime | None:
    return session.scalar(select(NotificationDelivery.next_attempt_at)
                          .where(NotificationDelivery.status == "pending")
                          .order_by(NotificationDelivery.next_attempt_at).limit(1))


def deliveries(session: Session, target_ids: list[int], limit: int) -> list[DeliveryRow]:
    query = (select(NotificationDelivery).where(NotificationDelivery.target_id.in_(target_ids))
             .order_by(NotificationDelivery.id.desc()).limit(limit))
    return [{"id": d.id, "created_at": timestamp(d.created_at) or "", "app": d.app, "event": d.event,
             "url": d.target.url, "status": d.status, "attempts": d.attempts, "last_result": d.last_result,
             "next_attempt_at": timestamp(d.next_attempt_at) if d.status == "pending" else None}
            for d in session.scalars(query)]
