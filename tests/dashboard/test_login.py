"""Logging into the dashboard: the one-time link from a real `ssh ... dashboard:login`, passwords, cookies."""

from __future__ import annotations

import datetime as dt
from http.cookies import SimpleCookie

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from sqlalchemy import update

from core.config import Settings
from core.models import DashboardSession
from server.dashboard.auth import SERVICES_KEY, secure
from tests.dashboard.conftest import CSRF, Dashboard


def cookie_of(response_headers: object) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    for header in response_headers.getall("Set-Cookie"):  # type: ignore[attr-defined]
        cookie.load(header)
    return cookie


@pytest.mark.asyncio
async def test_login_link_sets_a_strict_http_only_cookie_once(dashboard: Dashboard) -> None:
    path = dashboard.login_path()
    async with dashboard.client() as client:
        async with client.get(path, allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/"
            raw = response.headers.getall("Set-Cookie")[0]
            morsel = cookie_of(response.headers)["teresa_session"]
            assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/"
            assert not morsel["secure"], raw  # served over plain HTTP here
        async with client.get("/") as page:
            assert page.status == 200 and "shop" in await page.text()
        async with client.get(path, allow_redirects=False) as reused:
            assert reused.status == 403 and "already used" in await reused.text()
        page = await (await client.get("/")).text()
        token = CSRF.search(page)
        assert token
        async with client.post("/logout", data={"csrf": "forged"}) as forged:
            assert forged.status == 403
        async with client.post("/logout", data={"csrf": token[1]}, allow_redirects=False) as out:
            assert out.status == 303 and out.headers["Location"] == "/login"
        async with client.get("/api/apps") as ended:
            assert ended.status == 401
    outcomes = [(r.actor, r.outcome) for r in dashboard.records(action="dashboard:session")]
    assert outcomes == [("dev@example.com", "succeeded"), ("?", "failed")]
    [issued] = dashboard.records(action="dashboard:login")
    assert issued.outcome == "succeeded" and issued.credential.startswith("SHA256:")
    assert path.rsplit("/", 1)[1] not in repr(issued.details)  # the token is never recorded


@pytest.mark.asyncio
async def test_an_expired_link_is_refused(dashboard: Dashboard) -> None:
    path = dashboard.login_path()
    past = dt.datetime(2000, 1, 1)
    dashboard.deploy.server.call(dashboard.deploy.server.services.db.run(
        lambda s: s.execute(update(DashboardSession).values(expires_at=past))))
    async with dashboard.client() as client:
        async with client.get(path, allow_redirects=False) as response:
            assert response.status == 403 and "expired" in await response.text()
        async with client.get("/", allow_redirects=False) as page:
            assert page.status == 303 and page.headers["Location"] == "/login"
        async with client.get("/api/apps") as api:
            assert api.status == 401


@pytest.mark.asyncio
async def test_password_login_and_sessions_end_with_the_user(dashboard: Dashboard) -> None:
    server = dashboard.deploy.server
    assert server.local("users:set-password", "dev@example.com", stdin=b"a-long-password-1").status == 0
    async with dashboard.client() as client:
        async with client.post("/login", data={"email": "dev@example.com", "password": "wrong-password-x"}) as bad:
            assert bad.status == 401
        async with client.post("/login", data={"email": "dev@example.com", "password": "a-long-password-1"},
                               allow_redirects=False) as good:
            assert good.status == 303 and cookie_of(good.headers)["teresa_session"]["httponly"]
        async with client.get("/api/apps") as api:
            assert api.status == 200 and [a["name"] for a in await api.json()] == ["shop"]
        assert server.local("users:delete", "dev@example.com").status == 0
        async with client.get("/api/apps") as revoked:
            assert revoked.status == 401
    assert [r.outcome for r in dashboard.records(action="dashboard:session")] == ["failed", "succeeded"]


def test_cookies_are_secure_when_the_dashboard_is_served_over_tls() -> None:
    app = web.Application()
    app[SERVICES_KEY] = type("S", (), {"settings": Settings.from_env(
        {"TERESA_DASHBOARD_URL": "https://dash.example.com"})})()  # type: ignore[assignment]
    assert secure(make_mocked_request("GET", "/", app=app))
    app[SERVICES_KEY] = type("S", (), {"settings": Settings.from_env({})})()  # type: ignore[assignment]
    assert not secure(make_mocked_request("GET", "/", app=app))
