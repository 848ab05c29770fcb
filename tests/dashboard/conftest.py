"""A server with a pushed-to app and two teams, and a real HTTP client (aiohttp) for its dashboard."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import aiohttp
import pytest

from core.config import StorageSettings
from tests.fixtures.teresa import Deploy, make_deploy

SECRET = "s3cr3t-value-never-shown"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def confirm_link(client: aiohttp.ClientSession, path: str) -> aiohttp.ClientResponse:
    """Open a login link's page and press its button, as a browser would: the POST's response."""
    async with client.get(path) as page:
        assert page.status == 200, await page.text()
        token = CSRF.search(await page.text())
    assert token, "the link's page has no confirmation form"
    return await client.post(path, data={"csrf": token[1]}, allow_redirects=False)


@dataclass
class Dashboard:
    deploy: Deploy
    keys: dict[str, Path]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.deploy.server.server.dashboard_port}"

    def login_path(self, who: str = "alice") -> str:
        """`ssh teresa dashboard:login` with the real ssh client; the path of the link it prints."""
        result = self.deploy.ssh.run("dashboard:login", key=self.keys[who])
        assert result.returncode == 0, result.stderr
        url = result.stdout.decode().split()[0]
        assert url.startswith(self.deploy.server.settings.dashboard_url + "/login/")
        return urlparse(url).path

    def client(self) -> aiohttp.ClientSession:
        # unsafe=True: the jar keeps cookies for an IP address host (127.0.0.1)
        return aiohttp.ClientSession(self.base, cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def logged_in(self, who: str = "alice") -> aiohttp.ClientSession:
        client = self.client()
        async with await confirm_link(client, self.login_path(who)) as response:
            assert response.status == 303, await response.text()
        return client

    def records(self, **where: Any) -> list[Any]:
        from sqlalchemy import select

        from core.models import AuditRecord

        query = select(AuditRecord).filter_by(**where).order_by(AuditRecord.id)
        return self.deploy.server.call(self.deploy.server.services.db.run(lambda s: list(s.scalars(query))))


@pytest.fixture
def dashboard(tmp_path: Path, local_storage: StorageSettings, ssh_keys: dict[str, Path]) -> Iterator[Dashboard]:
    yield from make_dashboard(tmp_path, local_storage, ssh_keys)


@pytest.fixture
def dashboard_any_storage(tmp_path: Path, any_storage: StorageSettings,
                          ssh_keys: dict[str, Path]) -> Iterator[Dashboard]:
    yield from make_dashboard(tmp_path, any_storage, ssh_keys)


def make_dashboard(tmp_path: Path, storage: StorageSettings, ssh_keys: dict[str, Path]) -> Iterator[Dashboard]:
    for deploy in make_deploy(tmp_path, storage, ssh_keys):
        server = deploy.server
        assert server.local("config:set", "shop", f"API_TOKEN={SECRET}").status == 0
        server.local("users:create", "carol@example.com", "--no-password")
        server.local("keys:add", "--user", "carol@example.com", "laptop",
                     stdin=ssh_keys["carol"].with_suffix(".pub").read_bytes())
        server.local("teams:create", "other")
        server.local("teams:add-user", "other", "carol@example.com")
        assert server.local("apps:create", "theirs", "--team", "other").status == 0
        yield Dashboard(deploy, ssh_keys)
