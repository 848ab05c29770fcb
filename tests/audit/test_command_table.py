"""The audit log covers the command table: a walk over every command, on a pushed app, with a real database.

Each command runs once; a command that changed the database must be flagged
`mutating`, and a mutating command must leave exactly one record, of its own
name, with an outcome. A new command without a step here fails the walk.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from core.commands import TABLE, Actor
from core.models import AuditRecord, Base, SSHKey, User
from tests.fixtures.teresa import Deploy
from tests.gitreceiver.conftest import WEB_APP

SECRET = "hunter2-never-recorded"
EXEMPT = {"serve": "runs the server until stopped", "db:upgrade": "changes the schema, not the data"}


def steps(bob_key: bytes) -> list[tuple[str, str, bytes, bool]]:
    """(command line, actor: "local" | "dev", stdin, expect success)."""
    return [
        ("help", "dev", b"", True), ("version", "dev", b"", True), ("whoami", "dev", b"", True),
        ("users:create bob@example.com --no-password", "local", b"", True),
        ("users:set-password bob@example.com", "local", b"a-long-password-for-bob", True),
        ("passwd", "dev", b"a-long-password-for-dev", True),
        ("users:list", "local", b"", True),
        ("keys:add --user bob@example.com spare", "local", bob_key, True),
        ("keys:list --user bob@example.com", "local", b"", True),
        ("keys:remove --user bob@example.com spare", "local", b"", True),
        ("teams:create ops", "local", b"", True), ("teams:list", "local", b"", True),
        ("teams:add-user ops bob@example.com", "local", b"", True),
        ("teams:remove-user ops bob@example.com", "local", b"", True),
        ("apps:create extra --team ops", "local", b"", True), ("apps:list", "dev", b"", True),
        ("apps:info shop", "dev", b"", True),
        (f"config:set shop TOKEN={SECRET}", "dev", b"", True), ("config shop --reveal", "dev", b"", True),
        ("config:unset shop TOKEN", "dev", b"", True),
        ("ps shop", "dev", b"", True), ("ps:scale shop web=1", "dev", b"", True),
        ("ps:restart shop", "dev", b"", True), ("logs shop -n 1", "dev", b"", True),
        ("run shop -- true", "dev", b"", True),
        ("releases shop", "dev", b"", True), ("releases:rollback shop", "dev", b"", True),
        ("domains:add shop www.example.com", "dev", b"", True), ("domains shop", "dev", b"", True),
        ("domains:verify shop www.example.com", "local", b"", True),
        ("domains:remove shop www.example.com", "dev", b"", True),
        ("domains:tls shop --secret shop-example-com", "dev", b"", True), ("domains:tls shop --off", "dev", b"", True),
        ("limits shop", "dev", b"", True), ("limits:set shop --cpu 250m", "dev", b"", True),
        ("autoscale:set shop --min 1 --max 2 --cpu 80", "dev", b"", True),
        ("autoscale:unset shop", "dev", b"", True), ("manifests shop", "dev", b"", True),
        ("builds shop", "dev", b"", True), ("builds:output shop", "dev", b"", True),
        ("backup", "local", b"", True), ("backup:list", "local", b"", True),
        ("backup:restore no-such-backup.json.gz", "local", b"", False),
        ("audit", "local", b"", True), ("dashboard:login", "dev", b"", True),
        ("notifications shop", "dev", b"", True), ("notifications:deliveries shop", "dev", b"", True),
        ("notifications:add shop email:ops@example.com", "dev", b"", False),  # no SMTP server configured
        ("notifications:remove 999", "dev", b"", False),
        ("users:delete bob@example.com", "local", b"", True),
        ("apps:destroy extra --confirm extra", "local", b"", True),
    ]


def snapshot(deploy: Deploy) -> dict[str, list[str]]:
    """Every table's rows but the audit log's, as text."""
    def load(session: object) -> dict[str, list[str]]:
        return {t.name: sorted(repr(tuple(r)) for r in session.execute(t.select()))  # type: ignore[attr-defined]
                for t in Base.metadata.sorted_tables if t.name != "audit_records"}
    return deploy.server.call(deploy.server.services.db.run(load))


def records(deploy: Deploy) -> list[AuditRecord]:
    return deploy.server.call(deploy.server.services.db.run(
        lambda s: list(s.scalars(select(AuditRecord).order_by(AuditRecord.id)))))


def test_every_mutating_command_records_itself_once(deploy: Deploy, ssh_keys: dict[str, Path]) -> None:
    deploy.git.commit(WEB_APP)
    assert deploy.git.push("shop").returncode == 0
    walk = steps(ssh_keys["bob"].with_suffix(".pub").read_bytes())
    untested = set(TABLE) - {line.split()[0] for line, *_ in walk} - set(EXEMPT)
    assert not untested, f"add a step for: {sorted(untested)}"
    dev = deploy.server.call(deploy.server.services.db.run(
        lambda s: s.scalar(select(User).where(User.email == "dev@example.com"))))
    key = deploy.server.call(deploy.server.services.db.run(  # dashboard:login needs the key the session used
        lambda s: s.scalar(select(SSHKey.fingerprint).where(SSHKey.user_id == dev.id))))
    actors = {"local": Actor.local(), "dev": Actor(email=dev.email, user_id=dev.id, key_fingerprint=key,
                                                     address="192.0.2.7")}
    for line, who, stdin, should_succeed in walk:
        name = line.split()[0]
        before, seen = snapshot(deploy), len(records(deploy))
        result = deploy.server.local(*line.split(), stdin=stdin, actor=None if who == "local" else actors[who])
        assert (result.status == 0) == should_succeed, f"{line}: {result.err}"
        changed = snapshot(deploy) != before
        new = records(deploy)[seen:]
        if changed:
            assert TABLE[name].mutating, f"{name} changed the database but is not flagged mutating"
        if TABLE[name].mutating:
            assert [r.action for r in new] == [name], f"{name} left {[r.action for r in new]}"
            assert new[0].outcome == ("succeeded" if should_succeed else "failed"), name
            assert (new[0].address, new[0].credential) == (("local", "local") if who == "local"
                                                           else ("192.0.2.7", key))
        else:
            assert new == [], f"{name} is read-only but left {[r.action for r in new]}"
    everything = json.dumps([[r.action, r.details, r.reason] for r in records(deploy)])
    assert SECRET not in everything
    config_set = next(r for r in records(deploy) if r.action == "config:set")
    assert config_set.details == {"names": ["TOKEN"]} and config_set.app == "shop" and config_set.team_id


def test_records_cannot_be_changed_by_any_command() -> None:
    """No command's module writes to the audit table: only core.audit does (finish a pending outcome, prune)."""
    root = Path(__file__).resolve().parents[2]
    offenders = [str(p.relative_to(root)) for package in ("server", "gitreceiver", "controller", "keys", "core")
                 for p in (root / package).rglob("*.py")
                 if "AuditRecord" in p.read_text() and p.name not in ("audit.py", "models.py", "views.py")]
    assert offenders == []
