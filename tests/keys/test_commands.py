"""The command suite, on SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from controller.controller import Controller
from core.commands import Actor, execute
from core.config import Settings
from core.db import Database
from server.registry import load_commands
from controller.platform import Platform
from controller.runtime.base import Runtime
from core.services import Services
from core.storage import storage_for
from tests.fixtures.teresa import BytesInput, MemoryOutput, Result


class Commands:
    def __init__(self, url: str, tmp_path: Path):
        load_commands()
        self.db = Database(url)
        self.db.upgrade()
        settings = Settings.from_env({"TERESA_DATA_DIR": str(tmp_path)})
        self.base = Services(settings=settings, db=self.db, storage=storage_for(settings.storage))
        self.runtime: Runtime | None = None  # no runtime: as `teresa` without a running server
        self.services = Platform.assemble(self.base, Controller(self.base, self.runtime))
        self.loop = asyncio.new_event_loop()

    def __call__(self, line: str, actor: Actor | None = None, stdin: bytes = b"") -> Result:
        out, err = MemoryOutput(), MemoryOutput()
        status = self.loop.run_until_complete(execute(line.split(), actor or Actor.local(), self.services,
                                                      BytesInput(stdin), out, err, remote=actor is not None))
        return Result(status, out.text, err.text)

    def json(self, line: str, actor: Actor | None = None) -> object:
        result = self(line + " --json", actor)
        assert result.status == 0, result.err
        return json.loads(result.out)

    def actor(self, email: str) -> Actor:
        users = {u["email"]: u for u in self.json("users:list")}
        user_id = self.db.transaction(lambda s: s.execute(
            __import__("sqlalchemy").text("SELECT id FROM users WHERE email = :e"), {"e": email}).scalar())
        return Actor(email=email, user_id=user_id, is_admin=users[email]["admin"])

    def close(self) -> None:
        self.loop.close()
        self.db.dispose()


@pytest.fixture
def run(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    commands = Commands(database_url, tmp_path)
    yield commands
    commands.close()


def test_users_teams_apps_and_permissions(run: Commands) -> None:
    assert run("users:create alice@example.com", stdin=b"alice-password\n").status == 0
    assert run("users:create bob@example.com --no-password").status == 0
    assert run("users:create Alice@Example.com", stdin=b"another-password").err == \
        "error: user 'alice@example.com' already exists.\n"
    assert run("teams:create red").status == 0
    assert run("teams:create blue").status == 0
    assert run("teams:add-user red alice@example.com").status == 0
    assert run("teams:add-user blue bob@example.com").status == 0
    alice, bob = run.actor("alice@example.com"), run.actor("bob@example.com")

    assert run("apps:create shop", alice).status == 0
    assert run.json("apps:list", alice) == [{"name": "shop", "team": "red"}]
    assert run.json("apps:list", bob) == []
    assert run("apps:info shop", bob).err.startswith("error: app 'shop' does not exist")
    assert run.json("apps:info shop", alice)["team"] == "red"
    assert run("apps:create cart --team blue", alice).err.startswith("error: permission denied for team 'blue'")
    assert run("teams:add-user red bob@example.com", alice).status == 0  # members manage their team
    assert run.json("apps:list", bob) == [{"name": "shop", "team": "red"}]
    assert run.json("teams:list", bob) == [
        {"apps": [], "members": ["bob@example.com"], "name": "blue"},
        {"apps": ["shop"], "members": ["alice@example.com", "bob@example.com"], "name": "red"},
    ]
    assert run("apps:create cart", bob).err.startswith("error: you are in several teams (blue, red)")
    assert run("users:list", bob).err == "error: permission denied: only admins may list users.\n"

    assert run("apps:destroy shop --confirm shopp", alice).err.startswith("error: --confirm must repeat")
    assert run("apps:destroy shop --confirm shop", alice).status == 0
    assert run.json("apps:list") == []
    assert run("teams:remove-user red bob@example.com", alice).status == 0
    assert run("users:delete bob@example.com").status == 0
    assert [u["email"] for u in run.json("users:list")] == ["alice@example.com"]


def test_keys_and_passwords(run: Commands, ssh_keys: dict[str, Path]) -> None:
    run("users:create alice@example.com", stdin=b"alice-password")
    run("users:create bob@example.com", stdin=b"bob-password")
    alice, bob = run.actor("alice@example.com"), run.actor("bob@example.com")
    public = ssh_keys["alice"].with_suffix(".pub").read_bytes()

    added = run("keys:add laptop", alice, stdin=public)
    assert added.status == 0 and "SHA256:" in added.out
    assert run("keys:add desktop", alice, stdin=public).err.startswith("error: this key is already registered as")
    assert run("keys:add laptop", bob, stdin=public).err.startswith(
        "error: this key is already registered to another user")
    assert run("keys:list --user alice@example.com", bob).err.startswith("error: permission denied")
    assert [k["name"] for k in run.json("keys:list --user alice@example.com")] == ["laptop"]
    assert run("keys:remove laptop", alice).status == 0
    assert run.json("keys:list", alice) == []

    assert run("passwd", alice, stdin=b"short").err.startswith("error: the password is too short")
    assert run("passwd", alice, stdin=b"a-new-password\n").status == 0
    assert run("users:set-password bob@example.com", alice).err.startswith("error: permission denied")
    assert run("users:set-password bob@example.com", stdin=b"reset-password").status == 0
    assert run("users:delete nobody@example.com").err.startswith("error: user 'nobody@example.com' does not exist")


def test_help_and_usage_errors(run: Commands) -> None:
    assert "apps:create" in run("help").out
    assert "usage: apps:create" in run("help apps:create").out
    assert "usage: apps:create" in run("apps:create --help").out
    assert run("frobnicate").err == "error: unknown command 'frobnicate'; run 'help' to list the commands.\n"
    assert run("apps:list --color").err.startswith("error: apps:list: unrecognized arguments: --color")
    assert run("version").out.startswith("teresa ")


def test_removing_a_key_deletes_the_dashboard_sessions_made_with_it(run: Commands, ssh_keys: dict[str, Path]) -> None:
    """Finding 3 (migration 0011): a session's key_id cascades from its SSH key, on every database."""
    from sqlalchemy import func, select

    from core.models import DashboardSession
    from server.dashboard import sessions

    assert run("users:create alice@example.com --no-password").status == 0
    assert run("keys:add laptop --user alice@example.com",
               stdin=ssh_keys["alice"].with_suffix(".pub").read_bytes()).status == 0
    [key] = run.json("keys:list --user alice@example.com")
    actor = dataclasses.replace(run.actor("alice@example.com"), key_fingerprint=key["fingerprint"])

    def made_with_the_key(session: Session) -> str:
        credential = sessions.credential_of(session, actor)
        assert credential is not None and credential.key_id is not None
        return sessions.new_session(session, actor.user_id or 0, credential)

    token = run.db.transaction(made_with_the_key)
    assert run.db.transaction(lambda s: sessions.lookup(s, token)) is not None
    assert run("keys:remove laptop --user alice@example.com").status == 0
    assert run.db.transaction(lambda s: s.scalar(select(func.count()).select_from(DashboardSession))) == 0
