"""Finding 3: a dashboard session ends with the credential it came from, and loses an app with its team;
an open live stream stops too (it looks its session up again every few seconds)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

import aiohttp
import pytest

from server.dashboard.live import ACCESS_INTERVAL
from tests.dashboard.conftest import CSRF, Dashboard

PASSWORD = "a-long-password-1"


@contextlib.asynccontextmanager
async def live_stream(client: aiohttp.ClientSession, app: str) -> AsyncIterator[aiohttp.ClientResponse]:
    """The app's live process stream, open (its first event read)."""
    async with client.get(f"/apps/{app}/ps/live") as events:
        assert events.status == 200
        await events.content.readuntil(b"\n\n")
        yield events


async def ends(events: aiohttp.ClientResponse) -> None:
    """The stream ends by itself: the server closes it within a few access checks."""
    await asyncio.wait_for(events.content.read(), timeout=ACCESS_INTERVAL * 6)
    assert events.content.at_eof()


async def restart(client: aiohttp.ClientSession, app: str, csrf: str) -> int:
    async with client.post(f"/apps/{app}/restart", data={"csrf": csrf}, allow_redirects=False) as response:
        return response.status


async def csrf_of(client: aiohttp.ClientSession) -> str:
    async with client.get("/") as page:
        found = CSRF.search(await page.text())
    assert found
    return found[1]


@pytest.mark.asyncio
async def test_removing_the_key_ends_the_sessions_it_made(dashboard: Dashboard) -> None:
    server = dashboard.deploy.server
    async with await dashboard.logged_in() as client:
        csrf = await csrf_of(client)
        async with live_stream(client, "shop") as events:
            assert server.local("keys:remove", "laptop", "--user", "dev@example.com").status == 0
            await ends(events)
        async with client.get("/api/apps") as api:
            assert api.status == 401
        assert await restart(client, "shop", csrf) == 401


@pytest.mark.asyncio
async def test_a_new_password_ends_the_sessions_the_old_one_made(dashboard: Dashboard) -> None:
    server = dashboard.deploy.server
    assert server.local("users:set-password", "dev@example.com", stdin=PASSWORD.encode()).status == 0
    async with dashboard.client() as client, await dashboard.logged_in() as keyed:
        async with client.post("/login", data={"email": "dev@example.com", "password": PASSWORD},
                               allow_redirects=False) as login:
            assert login.status == 303
        csrf = await csrf_of(client)
        async with live_stream(client, "shop") as events:
            assert server.local("users:set-password", "dev@example.com", stdin=b"another-password-2").status == 0
            await ends(events)
        async with client.get("/api/apps") as api:
            assert api.status == 401
        assert await restart(client, "shop", csrf) == 401
        async with keyed.get("/api/apps") as by_key:
            assert by_key.status == 200  # a session made with an SSH key stands on that key, not the password


@pytest.mark.asyncio
async def test_leaving_the_team_ends_access_to_its_apps(dashboard: Dashboard) -> None:
    server = dashboard.deploy.server
    async with await dashboard.logged_in("carol") as client:
        csrf = await csrf_of(client)
        async with live_stream(client, "theirs") as events:
            assert server.local("teams:remove-user", "other", "carol@example.com").status == 0
            await ends(events)
        async with client.get("/api/apps") as api:
            assert api.status == 200 and await api.json() == []  # the session lives on, without the team's apps
        async with client.get("/apps/theirs/ps/live") as reopened:
            assert reopened.status == 404
        assert await restart(client, "theirs", csrf) == 404
