"""Logging into the dashboard: the one-time link from a real `ssh ... dashboard:login`, passwords, cookies."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from http.cookies import SimpleCookie

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from sqlalchemy import update

from core.config import Settings
from core.models import DashboardSession
from keys import passwords
from keys.ratelimit import TOO_MANY_AT_ONCE
from server.dashboard.auth import SERVICES_KEY, secure
from tests.dashboard.conftest import CSRF, Dashboard, confirm_link
from tests.localrt.harness import until


def cookie_of(response_headers: object) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    for header in response_headers.getall("Set-Cookie"):  # type: ignore[attr-defined]
        cookie.load(header)
    return cookie


@pytest.mark.asyncio
async def test_login_link_sets_a_strict_http_only_cookie_once(dashboard: Dashboard) -> None:
    path = dashboard.login_path()
    async with dashboard.client() as client:
        async with await confirm_link(client, path) as response:
            assert response.status == 303 and response.headers["Location"] == "/"
            raw = response.headers.getall("Set-Cookie")
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
    assert outcomes == [("dev@example.com", "succeeded")]  # the used link's second visit wrote nothing
    [issued] = dashboard.records(action="dashboard:login")
    assert issued.outcome == "succeeded" and issued.credential.startswith("SHA256:")
    assert path.rsplit("/", 1)[1] not in repr(issued.details)  # the token is never recorded


@pytest.mark.asyncio
async def test_a_login_link_asks_before_it_makes_a_session(dashboard: Dashboard) -> None:
    """Finding 6: a link someone else made must not log the visitor into their account unawares (login CSRF):
    its page names the account and only a POST, with a token tied to the browser that opened it, logs in."""
    path = dashboard.login_path()
    async with dashboard.client() as victim, dashboard.client() as attacker:
        async with victim.get(path, allow_redirects=False) as page:
            text = await page.text()
            assert page.status == 200 and "dev@example.com" in text
            assert "teresa_session" not in cookie_of(page.headers)  # no session yet
            token = CSRF.search(text)
        assert token
        async with victim.get("/api/apps") as nothing_yet:
            assert nothing_yet.status == 401
        # a cross-site form, or one posted with a token read from another browser's page, does nothing
        async with victim.post(path, data={"csrf": token[1]}, headers={"Sec-Fetch-Site": "cross-site"}) as forged:
            assert forged.status == 403
        async with attacker.get(path) as theirs:
            stolen = CSRF.search(await theirs.text())
        assert stolen
        async with victim.post(path, data={"csrf": "guess"}) as guessed:
            assert guessed.status == 403
        async with attacker.post(path, data={"csrf": token[1]}) as replayed:  # the page's token, not its cookie
            assert replayed.status == 403
        async with victim.post(path, data={"csrf": token[1]}, allow_redirects=False) as confirmed:
            assert confirmed.status == 303 and "teresa_session" in cookie_of(confirmed.headers)
        async with victim.get("/api/apps") as logged_in:
            assert logged_in.status == 200
    assert [r.outcome for r in dashboard.records(action="dashboard:session")] == ["succeeded"]


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
    assert dashboard.records(action="dashboard:session") == []


@pytest.mark.asyncio
async def test_unknown_login_links_write_nothing(dashboard: Dashboard) -> None:
    """Finding 4: anyone may ask for /login/<anything>; that must not grow the audit log."""
    before = len(dashboard.records())
    async with dashboard.client() as client:
        for n in range(30):
            async with client.get(f"/login/junk-{n}", allow_redirects=False) as response:
                assert response.status == 403 and "run dashboard:login again" in await response.text()
        assert len(dashboard.records()) == before
        for n in range(30):
            async with client.post(f"/login/junk-{n}", data={"csrf": "x"}) as posted:
                assert posted.status == 403
    assert len(dashboard.records()) == before


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


PASSWORD = "a-long-password-1"


@pytest.mark.asyncio
async def test_a_login_flood_is_checked_within_the_budget_and_leaves_ssh_its_own_bcrypt(
        dashboard: Dashboard, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 1: 60 concurrent wrong guesses, then the right password. Attempts count as they start, so at
    most the budget is checked and the rest are refused at once with a sentence; meanwhile an SSH password
    login (its own bcrypt threads) goes through; the budget is the SSH door's too."""
    server, ssh = dashboard.deploy.server, dashboard.deploy.ssh
    for email in ("dev@example.com", "carol@example.com"):
        assert server.local("users:set-password", email, stdin=PASSWORD.encode()).status == 0
    limiter = server.server.limiter
    gate, checked, real = threading.Event(), [], passwords.check_password

    def slow_bcrypt(password: str, hashed: str | None) -> bool:  # the flood's guesses wait here until let go
        if password.startswith("guess-"):
            checked.append(password)
            gate.wait(120)
        return real(password, hashed)

    monkeypatch.setattr(passwords, "check_password", slow_bcrypt)
    async with dashboard.client() as client:
        async def guess(password: str) -> tuple[int, str]:
            async with client.post("/login", data={"email": "dev@example.com", "password": password},
                                   allow_redirects=False) as response:
                return response.status, await response.text()

        flood = [asyncio.create_task(guess(f"guess-{n}")) for n in range(60)]
        try:
            await until(lambda: checked and sum(t.done() for t in flood) + len(checked) == 60, timeout=60,
                        what="every guess but those being checked to be answered")
            assert len(checked) <= limiter.budgets["user"]
            refused = [t.result() for t in flood if t.done()]
            assert all(status == 429 and TOO_MANY_AT_ONCE in text for status, text in refused)
            ssh_login = await asyncio.to_thread(ssh.run, "whoami", user="carol@example.com", password=PASSWORD,
                                                source="127.0.0.2")
            assert ssh_login.returncode == 0 and b"carol@example.com" in ssh_login.stdout, ssh_login.stderr
            assert not gate.is_set() and limiter.in_flight("dashboard") == len(checked)  # still being checked
        finally:
            gate.set()
        assert [status for status, _ in await asyncio.gather(*flood)].count(401) == len(checked)
        more = 0
        while (answer := await guess(f"guess-more-{more}"))[0] == 401:
            more += 1
        assert len(checked) == limiter.budgets["user"]  # every check the budget allows, and no more
        assert answer[0] == 429 and limiter.over_budget in answer[1]
        right = await guess(PASSWORD)
        assert right[0] == 429 and limiter.over_budget in right[1]
    assert ssh.run("whoami", user="dev@example.com", password=PASSWORD, source="127.0.0.3").returncode == 255
    failures = dashboard.records(action="dashboard:session", outcome="failed")
    assert len(failures) == limiter.budgets["user"]  # a refused attempt writes no record
