"""`audit`: read the audit log. Admins see every record; team members see their teams' apps'."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

from sqlalchemy.orm import Session

from core import audit, leases, names
from core import log as logging
from core.commands import ANYONE, CommandError, Invocation, arg, command, shown
from core.models import utcnow
from core.services import Services
from keys import access

log = logging.get(__name__)
RELATIVE = re.compile(r"^([0-9]{1,6})([mhdw])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: dt.datetime | None = None) -> dt.datetime:
    """`7d`, `12h`, `30m`, `2w`, or an ISO date or time (UTC), as a naive UTC datetime."""
    if match := RELATIVE.match(value.strip()):
        return (now or utcnow()) - dt.timedelta(**{UNITS[match[2]]: int(match[1])})
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"--since '{shown(value)}' is not a time; give one like 7d, 12h or 2026-01-31.") from None
    return parsed.astimezone(dt.timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed


def _details(details: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(details.items()) if v not in (None, False, [], ""))


@command("audit", "Show the audit log: who changed what, from where, when, and how it ended; newest first.",
         arg("--app", metavar="APP", help="only this app"), arg("--user", metavar="EMAIL", help="only this user"),
         arg("--since", metavar="WHEN", help="only records since then: 7d, 12h, 30m, or a date like 2026-01-31"),
         arg("--limit", type=int, default=200, metavar="N", help="at most N records (default 200)"),
         json=True, access=ANYONE + " (admins see all; members see their teams' apps)",
         example="audit --app myapp --since 7d")
async def audit_command(inv: Invocation[Services]) -> None:
    if not 1 <= inv.args.limit <= 10000:
        raise CommandError("--limit must be from 1 to 10000.")
    app = names.app_name(inv.args.app) if inv.args.app else None
    user = names.email(inv.args.user) if inv.args.user else None
    since = parse_since(inv.args.since) if inv.args.since else None

    def load(session: Session) -> list[dict[str, object]]:
        teams = None if inv.actor.is_admin else access.member_team_ids(session, inv.actor)
        rows = audit.query(session, team_ids=teams, app=app, actor=user, since=since, limit=inv.args.limit)
        return [audit.as_dict(r) for r in rows]

    rows = await inv.services.db.run(load)
    await inv.print_listing(rows, "No audit records match.",
                            ["WHEN", "WHO", "ACTION", "APP", "FROM", "VIA", "OUTCOME", "DETAILS"],
                            [[r["at"], r["actor"], r["action"], r["app"] or "", r["address"], r["credential"],
                              f"{r['outcome']} ({r['reason']})" if r["reason"] else r["outcome"],
                              _details(r["details"])]  # type: ignore[arg-type]
                             for r in rows])


PRUNE_LEASE = "periodic:audit-prune"


async def prune_loop(services: Services) -> None:
    """For `teresa serve`: one replica at a time prunes the audit log now and then once a day (none when
    retention is 0)."""
    settings = services.settings
    if settings.audit_retention_days <= 0:
        return
    await leases.while_held(services.db, PRUNE_LEASE, settings.replica_name, settings.deploy_lease_seconds,
                            lambda: _prune_daily(services))


async def _prune_daily(services: Services, *, interval: float = 24 * 60 * 60) -> None:
    while True:
        try:
            await audit.prune(services.db, services.settings.audit_retention_days)
        except Exception:  # the loop's boundary: a failed pruning is tried again tomorrow
            log.exception("audit_prune_failed")
        await asyncio.sleep(interval)
