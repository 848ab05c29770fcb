"""The audit log's guarantees: a record commits with its change, outcomes follow, pruning is recorded,
logins over real SSH are recorded, `audit` filters."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from core import audit
from core.commands import Actor
from core.db import Database
from core.models import AuditRecord, Team, User, utcnow
from gitreceiver.logins import LoginAudit
from server.audit_commands import parse_since
from tests.fixtures.teresa import Deploy, wait_for

WHO = audit.Who("alice@example.com", "192.0.2.1", "SHA256:abc")


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    database.upgrade()
    return database


def rows(db: Database) -> list[AuditRecord]:
    return db.transaction(lambda s: list(s.scalars(select(AuditRecord).order_by(AuditRecord.id))))


@pytest.mark.asyncio
async def test_the_record_commits_with_the_first_change_and_gets_the_outcome_after(db: Database) -> None:
    async with audit.recording(db, audit.Entry(WHO, "teams:create", details={"team": "web"})) as entry:
        await db.run(lambda s: s.add(Team(name="web")))
        [pending] = rows(db)  # committed together with the team, before the action ended
        assert (pending.outcome, pending.action, pending.details) == ("pending", "teams:create", {"team": "web"})
        await db.run(lambda s: s.add(Team(name="ops")))  # a second change: still one record
        entry.outcome = audit.SUCCEEDED
    [done] = rows(db)
    assert (done.id, done.outcome) == (pending.id, "succeeded")


@pytest.mark.asyncio
async def test_a_rolled_back_change_takes_its_record_with_it(db: Database) -> None:
    def fail(session: object) -> None:
        session.add(Team(name="web"))  # type: ignore[attr-defined]
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        async with audit.recording(db, audit.Entry(WHO, "teams:create")):
            await db.run(fail)
    [record] = rows(db)
    assert (record.outcome, record.reason) == ("failed", "error")
    assert db.transaction(lambda s: s.scalar(select(Team))) is None


@pytest.mark.asyncio
async def test_work_outside_an_action_is_not_recorded(db: Database) -> None:
    async with audit.recording(db, audit.Entry(WHO, "x")):
        pass
    await db.run(lambda s: s.add(Team(name="web")))
    assert [r.action for r in rows(db)] == ["x"]


@pytest.mark.asyncio
async def test_pruning_removes_old_records_and_records_itself(db: Database) -> None:
    old = utcnow() - dt.timedelta(days=400)
    db.transaction(lambda s: s.add(audit.Entry(WHO, "ancient").row(audit.SUCCEEDED)))
    db.transaction(lambda s: s.execute(AuditRecord.__table__.update().values(at=old)))
    await audit.record(db, audit.Entry(WHO, "recent"))
    assert await audit.prune(db, 365) == 1
    kept = rows(db)
    assert [r.action for r in kept] == ["recent", "audit:prune"]
    assert kept[1].details["removed"] == 1 and kept[1].actor == "teresa"


def test_since_accepts_relative_and_absolute_times() -> None:
    now = dt.datetime(2026, 3, 10, 12, 0)
    assert parse_since("2d", now) == dt.datetime(2026, 3, 8, 12, 0)
    assert parse_since("2026-03-01") == dt.datetime(2026, 3, 1)
    assert parse_since("2026-03-01T10:00:00+02:00") == dt.datetime(2026, 3, 1, 8, 0)


def test_ssh_logins_are_recorded_with_address_and_fingerprint(deploy: Deploy, ssh_keys: dict[str, Path]) -> None:
    assert deploy.command("whoami")[0] == 0
    stranger = deploy.ssh.run("whoami", key=ssh_keys["bob"])
    assert stranger.returncode != 0

    def logins() -> list[dict[str, object]]:
        found = json.loads(deploy.server.local("audit", "--json").out)
        return [r for r in found if r["action"] == "login"]

    found = wait_for(lambda: (lambda r: r if len(r) >= 2 else None)(logins()))
    ok = next(r for r in found if r["outcome"] == "succeeded")
    assert (ok["actor"], ok["address"], ok["details"]) == ("dev@example.com", "127.0.0.1", {"method": "publickey"})
    assert str(ok["credential"]).startswith("SHA256:")
    bad = next(r for r in found if r["outcome"] == "failed")
    assert bad["details"] == {"method": "publickey"} and bad["reason"] == "unknown key"
    assert bad["credential"] != ok["credential"]
    # a command over SSH carries the client's address and key into its record
    assert deploy.command("teams:create qa")[0] != 0  # not an admin: denied, and recorded as such
    [denied] = [r for r in json.loads(deploy.server.local("audit", "--json").out) if r["action"] == "teams:create"
                and r["actor"] == "dev@example.com"]
    assert (denied["outcome"], denied["address"], denied["credential"]) == ("denied", "127.0.0.1", ok["credential"])


HOSTILE = "x\x1b]0;owned\x07\x1b[31m\u202e@example.com"  # sets the title, turns red, reverses the text


async def _failed_login(logins: LoginAudit, user: str) -> None:
    logins.failed(user=user, address="192.0.2.9", method="password", credential="password")
    await logins.drain()


@pytest.mark.asyncio
async def test_audit_prints_control_characters_of_login_names_escaped(deploy: Deploy) -> None:
    """Finding 5: a login e-mail (dashboard) or SSH user name carrying terminal escapes reaches `audit` escaped.

    No SSH client sends such a user name (OpenSSH refuses; asyncssh's server refuses it too, by SASLprep, before
    Teresa's callbacks): the SSH door's record is written as it would write it."""
    dashboard = f"http://127.0.0.1:{deploy.server.server.dashboard_port}"
    async with aiohttp.ClientSession(dashboard) as client:
        async with client.post("/login", data={"email": HOSTILE, "password": "wrong-password"}) as response:
            assert response.status == 401
    logins = deploy.server.server.ssh.logins
    deploy.server.call(_failed_login(logins, HOSTILE))

    def hostile_rows() -> list[dict[str, object]] | None:
        found = [r for r in json.loads(deploy.server.local("audit", "--json").out) if r["actor"] == HOSTILE]
        return found if len(found) == 2 else None

    assert {r["action"] for r in wait_for(hostile_rows)} == {"dashboard:session", "login"}  # JSON keeps them exact
    table = deploy.server.local("audit").out
    assert not any(c in table for c in "\x1b\x07\u202e")
    assert table.count("x\\x1b]0;owned\\x07\\x1b[31m\\u202e@example.com") == 2


def test_denials_are_recorded_by_command_name_only_and_within_a_budget_per_user(deploy: Deploy) -> None:
    """Finding 7: an outsider's refused commands reach the app's team's feed without their arguments, and at most
    DENIALS_PER_USER of them in DENIAL_WINDOW."""
    server = deploy.server
    outsiders = []
    for email in ("mallory@example.com", "trudy@example.com"):
        assert server.local("users:create", email, "--no-password").status == 0
        user = server.call(server.services.db.run(lambda s: s.scalar(select(User).where(User.email == email))))
        outsiders.append(Actor(email=email, user_id=user.id, address="192.0.2.7"))
    for n in range(3 * audit.DENIALS_PER_USER):
        refused = server.local("ps:scale", "shop", f"web={n}", actor=outsiders[0])
        assert refused.status == 1 and "does not exist" in refused.err
    assert server.local("ps:scale", "shop", "web=1", actor=outsiders[1]).status == 1
    records = json.loads(server.local("audit", "--json", "--app", "shop").out)
    by_mallory = [r for r in records if r["actor"] == "mallory@example.com"]
    assert len(by_mallory) == audit.DENIALS_PER_USER
    assert {(r["action"], r["outcome"], json.dumps(r["details"])) for r in by_mallory} == {("ps:scale", "denied", "{}")}
    assert [r["outcome"] for r in records if r["actor"] == "trudy@example.com"] == ["denied"]  # a budget per user


def test_a_value_in_a_malformed_config_set_or_a_run_line_stays_out_of_the_record(deploy: Deploy) -> None:
    """The README promises names only: `config:set app 'DB_URL postgres://…'` (a space for the '='), or
    `run app PGPASSWORD=… psql`, must not put the value in the audit log, nor echo it in the refusal."""
    secret = "s3cr3t-pw"
    refusal = ("error: argument 2 of config:set is not NAME=value (a name of letters, digits and underscores, "
               "then '='); write it like DEBUG=1, quoted whole if the value has spaces.\n")
    assert deploy.command(f"config:set shop GOOD=1 'DB_URL postgres://u:{secret}@db/x'") == (1, "", refusal)
    assert deploy.command(f"config:set shop GOOD=1 'DB_URL postgres://u:{secret}@db/x?ssl=on'") == (1, "", refusal)
    for line in (f"run shop PGPASSWORD={secret} psql -h db", f"run shop -- 'PGPASSWORD={secret} psql -h db'",
                 f"run shop -- psql postgres://u:{secret}@db/x"):
        assert deploy.command(line)[0] == 1  # nothing released yet; recorded all the same

    records = json.loads(deploy.server.local("audit", "--json").out)
    assert secret not in json.dumps(records)
    details = [r["details"] for r in reversed(records) if r["action"] in ("config:set", "run")]
    assert details == [{"names": ["GOOD"], "malformed": 1}] * 2 + [{"program": "psql", "env": ["PGPASSWORD"]}] * 2 + [
        {"program": "psql"}]
