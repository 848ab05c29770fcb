"""`teresa backup`, `backup:list` and `backup:restore` with Teresa's real tables, on SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import re
import time
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa

from controller.controller import Controller
from controller.platform import Platform
from controller.runtime.base import Capability
from core.layout import BuildKeys
from core.backup import list_backups
from core.backup_commands import backup_loop
from core.models import Base, Build
from tests.fixtures.databases import BACKENDS, fresh_database
from tests.keys.test_commands import Commands

SECRET = "postgres://shop:s3cret-pw@db.internal/shop"


class AcceptingRuntime:
    """A runtime that accepts every app and release at once: what runs is not what these tests are about."""

    capabilities = Capability.ROUTER  # as the local runtime the settings name

    async def create_app(self, app: str) -> None:
        pass

    async def deploy(self, release: object, previous: object, out: object, *, restart: bool = False) -> None:
        pass

    async def set_domains(self, app: str, hosts: list[str], *, tls_secret: str = "") -> None:
        pass


class Teresa(Commands):
    """The command suite on one database, with storage, a controller and the runtime above."""

    def __init__(self, url: str, data_dir: Path):
        super().__init__(url, data_dir)
        self.services = Platform.assemble(self.base, Controller(self.base, AcceptingRuntime()))

    def ok(self, line: str, stdin: bytes = b"") -> str:
        result = self(line, stdin=stdin)
        assert result.status == 0, result.err
        return result.out

    def push(self, app: str, build_id: str, commit: str) -> None:
        """What a successful push leaves behind: a build record, a slug with its Procfile, a release."""
        storage = self.services.storage
        slug_key = f"apps/{app}/builds/{build_id}/slug.tgz"
        storage.put_stream(slug_key, io.BytesIO(b"slug"))
        storage.put_stream(f"apps/{app}/builds/{build_id}/Procfile", io.BytesIO(b"web: bin/serve\nworker: bin/work\n"))

        def record(session: sa.orm.Session) -> None:
            app_id = session.execute(sa.text("SELECT id FROM apps WHERE name = :n"), {"n": app}).scalar_one()
            session.add(Build(id=build_id, app_id=app_id, number=1, user="alice@example.com", ref="refs/heads/main",
                              commit=commit, status="succeeded", reason=""))

        self.db.transaction(record)
        controller, actor = self.services.controller, self.actor("alice@example.com")

        async def release() -> None:
            async with controller.deploy_lock(app, actor):  # as a push holds it
                await controller.release_build(app, BuildKeys(app, build_id), "", actor, self.quiet)

        self.loop.run_until_complete(release())

    @staticmethod
    async def quiet(_line: str) -> None:
        pass

    def views(self) -> dict[str, object]:
        """Everything a user sees through the commands."""
        return {line: self.json(line) for line in (
            "users:list", "keys:list --user alice@example.com", "keys:list --user bob@example.com", "teams:list",
            "apps:list", "config shop --reveal", "releases shop", "builds shop", "domains shop", "releases cart",
        )}

    def rows(self) -> dict[str, list[tuple]]:
        with self.db.engine.connect() as conn:
            return {table.name: [tuple(row) for row in conn.execute(sa.select(table).order_by(*table.primary_key))]
                    for table in Base.metadata.sorted_tables}


def populate(teresa: Teresa, ssh_keys: dict[str, Path]) -> None:
    teresa.ok("users:create alice@example.com --name Alice --admin", stdin=b"alice-password\n")
    teresa.ok("users:create bob@example.com --no-password")
    teresa.ok("keys:add laptop --user alice@example.com", stdin=ssh_keys["alice"].with_suffix(".pub").read_bytes())
    teresa.ok("keys:add desktop --user bob@example.com", stdin=ssh_keys["bob"].with_suffix(".pub").read_bytes())
    teresa.ok("teams:create web")
    teresa.ok("teams:add-user web alice@example.com")
    teresa.ok("teams:add-user web bob@example.com")
    teresa.ok("apps:create shop --team web")
    teresa.ok("apps:create cart --team web")
    teresa.ok(f"config:set shop DATABASE_URL={SECRET} GREETING=héllo")
    teresa.push("shop", "b" * 32, "c" * 40)
    teresa.ok("config:set shop DEBUG=0")
    teresa.ok("domains:add shop www.shop.example")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def test_backup_then_restore_into_an_empty_database_brings_everything_back(
        backend: str, tmp_path: Path, ssh_keys: dict[str, Path]) -> None:
    with fresh_database(backend, tmp_path / "first") as first_url, \
            fresh_database(backend, tmp_path / "second") as second_url:
        first = Teresa(first_url, tmp_path)
        second = Teresa(second_url, tmp_path)  # the same storage: a new server after the old one was lost
        try:
            populate(first, ssh_keys)
            before, rows = first.views(), first.rows()
            assert [r["version"] for r in before["releases shop"]] == ["v2", "v1"]
            assert before["config shop --reveal"]["DATABASE_URL"] == SECRET

            taken = first.ok("backup")
            name = re.search(r"teresa-\d{8}T\d{6}Z\.json\.gz", taken)[0]
            assert second.json("backup:list") == [{"name": name, "taken_at": re.sub(
                r"teresa-(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z.*", r"\1-\2-\3T\4:\5:\6Z", name)}]
            assert second.json("users:list") == []

            restored = second.ok(f"backup:restore {name}")
            assert restored.startswith(f"Restored {name}: ") and SECRET not in taken + restored
            assert second.views() == before
            after = second.rows()
            restore = after["audit_records"].pop()  # the restore itself is recorded, in the restored log
            assert restore[3:5] == ("backup:restore", None)
            assert after == rows

            # new rows get fresh ids and versions after the restore
            second.ok("users:create carol@example.com --no-password")
            second.ok("config:set shop AFTER=1")
            assert [r["version"] for r in second.json("releases shop")] == ["v3", "v2", "v1"]
        finally:
            first.close()
            second.close()


def test_restore_refuses_a_database_with_data_unless_forced(backend: str, tmp_path: Path,
                                                            ssh_keys: dict[str, Path]) -> None:
    with fresh_database(backend, tmp_path) as url:
        teresa = Teresa(url, tmp_path)
        try:
            populate(teresa, ssh_keys)
            before = teresa.views()
            assert teresa.json("backup:list") == []
            teresa.ok("backup")
            name = teresa.json("backup:list")[0]["name"]
            teresa.ok("users:delete bob@example.com")
            teresa.ok("config:unset shop GREETING")

            refused = teresa(f"backup:restore {name}")
            assert refused.status == 1 and refused.out == ""
            assert re.fullmatch(r"error: The database is not empty \(table \w+ has rows\); restore into an empty "
                                r"database or pass --force to replace its contents\.\n", refused.err)
            assert "bob@example.com" not in [u["email"] for u in teresa.json("users:list")]

            teresa.ok(f"backup:restore {name} --force")
            assert teresa.views() == before
        finally:
            teresa.close()


def test_restore_errors_are_one_sentence(tmp_path: Path) -> None:
    teresa = Teresa(f"sqlite:///{tmp_path / 'teresa.sqlite'}", tmp_path)
    try:
        assert teresa("backup:list").out == "No backups yet; take one with: teresa backup\n"
        missing = teresa("backup:restore teresa-20260101T000000Z.json.gz")
        assert missing.err == ("error: There is no backup named teresa-20260101T000000Z.json.gz; "
                               "`teresa backup:list` shows the backups there are.\n")
        teresa.services.storage.put_stream("backups/teresa-20260101T000000Z.json.gz", io.BytesIO(b"not gzip"))
        damaged = teresa("backup:restore teresa-20260101T000000Z.json.gz")
        assert damaged.status == 1 and damaged.err.startswith("error: The backup is damaged or not a Teresa backup")
        assert "Traceback" not in damaged.err and damaged.err.count("\n") == 1
    finally:
        teresa.close()


def test_backup_commands_exist_only_on_the_server_host(tmp_path: Path) -> None:
    teresa = Teresa(f"sqlite:///{tmp_path / 'teresa.sqlite'}", tmp_path)
    try:
        teresa("users:create alice@example.com --no-password --admin")
        alice = teresa.actor("alice@example.com")
        for line in ("backup", "backup:list", "backup:restore x"):
            assert teresa(line, alice).err == f"error: unknown command '{line.split()[0]}'; run 'help' to list the commands.\n"
    finally:
        teresa.close()


@pytest.fixture
def server_services(tmp_path: Path) -> Iterator[Teresa]:
    teresa = Teresa(f"sqlite:///{tmp_path / 'teresa.sqlite'}", tmp_path)
    yield teresa
    teresa.close()


def test_the_backup_loop_backs_up_at_once_then_keeps_going(server_services: Teresa) -> None:
    storage = server_services.services.storage

    async def first_backup() -> list:
        task = asyncio.create_task(backup_loop(server_services.services))
        deadline = time.monotonic() + 30
        try:
            while not (found := await asyncio.to_thread(list_backups, storage)):
                assert time.monotonic() < deadline, "no backup within 30 seconds"
                assert not task.done(), task
                await asyncio.sleep(0.05)
            return found
        finally:
            task.cancel()

    assert len(server_services.loop.run_until_complete(first_backup())) == 1


def test_the_backup_loop_returns_at_once_when_the_interval_is_zero(server_services: Teresa) -> None:
    from dataclasses import replace

    services = replace(server_services.services, settings=replace(server_services.services.settings, backup_interval=0))
    server_services.loop.run_until_complete(asyncio.wait_for(backup_loop(services), timeout=5))
    assert list_backups(services.storage) == []
