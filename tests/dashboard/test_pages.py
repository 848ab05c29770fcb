"""The dashboard's pages with a real HTTP client: a real push watched live, rollback with CSRF, team isolation."""

from __future__ import annotations

import asyncio
import html
import io
import json
import re
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.layout import BuildKeys
from core.models import App, Build
from server.dashboard import views
from tests.dashboard.conftest import CSRF, SECRET, Dashboard
from tests.fixtures.s3 import s3_gets
from tests.fixtures.teresa import GitClient
from tests.gitreceiver.conftest import BUILDPACKS, WEB_APP


async def text_of(client: aiohttp.ClientSession, path: str, status: int = 200) -> str:
    async with client.get(path) as response:
        body = await response.text()
        assert response.status == status, f"{path}: {response.status} {body[:300]}"
        return body


async def releases(client: aiohttp.ClientSession) -> list[str]:
    async with client.get("/api/apps/shop") as response:
        return [r["reason"] for r in (await response.json())["releases"]]


@pytest.mark.asyncio
async def test_live_build_lines_rollback_and_activity(dashboard: Dashboard, tmp_path: Path) -> None:
    deploy = dashboard.deploy
    deploy.git.commit(WEB_APP)
    assert (await asyncio.to_thread(deploy.git.push, "shop")).returncode == 0
    go_ahead = tmp_path / "go-ahead"
    status, _, err = deploy.command(f"config:set shop BUILDPACK_URL={BUILDPACKS / 'wait_for_file'} "
                                    f"GO_AHEAD_FILE={go_ahead}")
    assert status == 0, err
    deploy.git.commit({"index.html": "version two\n"})
    client = await dashboard.logged_in()
    async with client:
        push = deploy.git.popen_push("shop")
        try:
            async def running_build() -> int | None:
                async with client.get("/api/apps/shop") as response:
                    build = (await response.json())["last_build"]
                return build["number"] if build and build["number"] == 2 else None

            number = None
            while number is None:  # the build row appears as soon as the push reaches the deploy workflow
                number = await running_build()
            page = await text_of(client, f"/apps/shop/builds/{number}")
            assert f'data-live-log="/apps/shop/builds/{number}/live"' in page
            seen: list[str] = []
            async with client.get(f"/apps/shop/builds/{number}/live") as events:
                assert events.headers["Content-Type"].startswith("text/event-stream")
                async for raw in events.content:
                    line = raw.decode().rstrip("\n")
                    seen.append(line)
                    if "waiting for the go-ahead" in line:
                        assert push.poll() is None, "the push ended before its lines reached the dashboard"
                        go_ahead.touch()
                    if line == "event: end":
                        break
            assert "data: -----> Building shop main" in "\n".join(seen)
            assert any("got the go-ahead" in line for line in seen)
            assert await asyncio.to_thread(push.wait, 120) == 0, push.stderr.read() if push.stderr else ""
        finally:
            if push.poll() is None:
                push.kill()

        stored = await text_of(client, f"/apps/shop/builds/{number}")
        assert "got the go-ahead" in stored and "data-live-log" not in stored
        app_page = await text_of(client, "/apps/shop")
        assert "API_TOKEN" in app_page and SECRET not in app_page

        # a forged POST (no CSRF token) changes nothing and records nothing
        before, audited = await releases(client), len(dashboard.records(action="releases:rollback"))
        async with client.post("/apps/shop/rollback", data={"version": "1"}, allow_redirects=False) as forged:
            assert forged.status == 403
        async with client.post("/apps/shop/rollback", data={"version": "1", "csrf": "guess"}) as forged:
            assert forged.status == 403
        assert await releases(client) == before
        assert len(dashboard.records(action="releases:rollback")) == audited

        confirm = await text_of(client, "/apps/shop/rollback?version=1")
        token = CSRF.search(confirm)
        assert token and "Roll back to v1" in confirm
        async with client.post("/apps/shop/rollback", data={"version": "1", "csrf": token[1]},
                               allow_redirects=False) as done:
            assert done.status == 303, await done.text()
        assert (await releases(client))[0] == "rollback to v1"
        assert deploy.get() == (200, "version one\n")
        [record] = dashboard.records(action="releases:rollback")
        assert (record.outcome, record.app, record.details) == ("succeeded", "shop", {"version": "v1"})
        assert record.credential.startswith("dashboard") and record.actor == "dev@example.com"
        activity = await text_of(client, "/apps/shop")
        assert "releases:rollback" in activity and "version=v1" in activity

        diff = await text_of(client, "/apps/shop?from=1&to=3")
        section = diff.split('<h2 id="diff">', 1)[1].split("</section>", 1)[0]
        assert "<li>config added: BUILDPACK_URL, GO_AHEAD_FILE</li>" in section and "<li>build: <code>" in section
        assert "API_TOKEN" not in section and SECRET not in diff  # unchanged between v1 and v3
        everything = "".join([await text_of(client, p) for p in ("/", "/api/apps", "/api/apps/shop")])
        assert SECRET not in everything and "shop" in everything
    assert SECRET not in json.dumps([[r.details, r.reason] for r in dashboard.records()])


@pytest.mark.asyncio
async def test_another_teams_user_sees_none_of_it(dashboard: Dashboard, tmp_path: Path) -> None:
    deploy = dashboard.deploy
    deploy.git.commit(WEB_APP)
    assert (await asyncio.to_thread(deploy.git.push, "shop")).returncode == 0
    outsider = GitClient(deploy.ssh, dashboard.keys["carol"], tmp_path / "carol")
    outsider.commit(WEB_APP)
    assert (await asyncio.to_thread(outsider.push, "shop")).returncode != 0
    [refused] = dashboard.records(action="push", outcome="denied")
    assert (refused.actor, refused.app, refused.address) == ("carol@example.com", "shop", "127.0.0.1")
    assert refused.credential.startswith("SHA256:")
    carol = await dashboard.logged_in("carol")
    async with carol:
        index = await text_of(carol, "/")
        assert "theirs" in index and "shop" not in index
        async with carol.get("/api/apps") as response:
            assert [a["name"] for a in await response.json()] == ["theirs"]
        for path in ("/apps/shop", "/api/apps/shop", "/apps/shop/builds/1", "/apps/shop/builds/1/live",
                     "/apps/shop/ps/live", "/apps/shop/rollback?version=1", "/apps/shop/restart",
                     "/apps/nonexistent"):
            await text_of(carol, path, status=404)
        token = CSRF.search(await text_of(carol, "/"))
        assert token
        async with carol.post("/apps/shop/restart", data={"csrf": token[1]}) as posted:
            assert posted.status == 404
    result = deploy.ssh.run("audit --json", key=dashboard.keys["carol"])
    assert result.returncode == 0, result.stderr
    assert {r["app"] for r in json.loads(result.stdout)} == {"theirs"}
    result = deploy.ssh.run("audit --app shop", key=dashboard.keys["carol"])
    assert result.stdout.decode().strip() == "No audit records match."
    mine = json.loads(deploy.ssh.run("audit --json --app shop", key=dashboard.keys["alice"]).stdout)
    assert {"push", "config:set"} <= {r["action"] for r in mine}
    assert ("carol@example.com", "denied") in {(r["actor"], r["outcome"]) for r in mine if r["action"] == "push"}
    admin = json.loads(deploy.server.local("audit", "--json").out)
    assert {"shop", "theirs", None} <= {r["app"] for r in admin}


@pytest.mark.asyncio
async def test_a_big_build_log_shows_its_tail_from_a_line_start(dashboard_any_storage: Dashboard) -> None:
    """Finding 2: the page shows the stored log's last 2 MB, from a line's start, and reads only those bytes."""
    dashboard, build_id = dashboard_any_storage, "b" * 32
    server = dashboard.deploy.server

    def add_build(session: Session) -> None:
        app = session.scalar(select(App).where(App.name == "shop"))
        assert app is not None
        session.add(Build(id=build_id, app_id=app.id, number=1, user="dev@example.com", ref="refs/heads/main",
                          commit="c" * 40, status="failed"))

    server.call(server.services.db.run(add_build))
    lines = [f"line {n:07d} {'é' * 30}\n" for n in range(100_000)]  # 7 MB, and no line is ASCII throughout
    server.services.storage.put_stream(BuildKeys("shop", build_id).log, io.BytesIO("".join(lines).encode()))
    gets = s3_gets(server.services.storage) if server.settings.storage.type == "s3" else None
    async with await dashboard.logged_in() as client:
        async with client.get("/apps/shop/builds/1") as response:
            page = await response.text()
            assert response.status == 200 and response.headers["X-Frame-Options"] == "DENY"
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    log = re.search(r'<pre class="log[^"]*">(.*?)</pre>', page, re.S)
    assert log is not None
    shown = html.unescape(log[1])
    assert shown.startswith(views.CUT_NOTICE)
    tail = shown.removeprefix(views.CUT_NOTICE)
    first = tail.split("\n", 1)[0] + "\n"
    assert first in lines and tail == "".join(lines[lines.index(first):])  # whole lines, to the last one
    assert views.MAX_LOG_BYTES - len(lines[0].encode()) < len(tail.encode()) <= views.MAX_LOG_BYTES
    if gets is not None:
        assert gets == [(f"bytes=-{views.MAX_LOG_BYTES}", views.MAX_LOG_BYTES)]
