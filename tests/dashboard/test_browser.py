"""The dashboard in a real headless Chromium: log in with the link, watch a real push's build live, roll back,
see it in the activity feed. Screenshots of the main pages are saved for review (TERESA_TEST_ARTIFACTS)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.dashboard.chromium import Chromium, executable
from tests.dashboard.conftest import SECRET, Dashboard
from tests.fixtures.teresa import read_until
from tests.gitreceiver.conftest import BUILDPACKS, WEB_APP

ARTIFACTS = Path(os.environ.get("TERESA_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / "test-artifacts")


@pytest.mark.asyncio
@pytest.mark.skipif(executable() is None, reason="chromium is not installed (apt-get install chromium)")
async def test_a_user_watches_a_build_and_rolls_back_in_a_browser(dashboard: Dashboard, tmp_path: Path) -> None:
    deploy, shots = dashboard.deploy, ARTIFACTS / "dashboard"
    deploy.git.commit(WEB_APP)
    assert (await asyncio.to_thread(deploy.git.push, "shop")).returncode == 0
    go_ahead = tmp_path / "go-ahead"
    assert deploy.command(f"config:set shop BUILDPACK_URL={BUILDPACKS / 'wait_for_file'} "
                          f"GO_AHEAD_FILE={go_ahead}")[0] == 0
    deploy.git.commit({"index.html": "version two\n"})
    async with Chromium(tmp_path / "profile") as browser:
        await browser.goto(dashboard.base + dashboard.login_path())
        await browser.wait_for("document.body.textContent.includes('Log in to the dashboard as dev@example.com')")
        await browser.screenshot(shots / "confirm-login.png")
        await browser.evaluate("document.querySelector('form[action^=\"/login/\"] button').click()")
        await browser.wait_for("location.pathname === '/' && document.body.textContent.includes('shop')")
        assert "theirs" not in await browser.evaluate("document.body.textContent")
        await browser.screenshot(shots / "apps.png")

        push = deploy.git.popen_push("shop")
        try:
            await browser.goto(f"{dashboard.base}/apps/shop")
            await browser.wait_for("document.querySelector('[data-live-ps]').textContent.includes('web')")
            # build 2 exists and waits once its first line reached the client (a busy machine may take a while)
            await asyncio.to_thread(read_until, push, "waiting for the go-ahead")
            await browser.goto(f"{dashboard.base}/apps/shop/builds/2")
            await browser.wait_for("(document.querySelector('pre.log') || {textContent: ''})"
                                   ".textContent.includes('waiting for the go-ahead')")
            assert push.poll() is None, "the push ended before the browser showed its lines"
            await browser.screenshot(shots / "build-live.png")
            go_ahead.touch()
            # the stream ends with the build; the page reloads and shows the stored log and the outcome
            await browser.wait_for("!document.querySelector('[data-live-log]') && "
                                   "document.body.textContent.includes('got the go-ahead') && "
                                   "document.body.textContent.includes('succeeded')")
            assert await asyncio.to_thread(push.wait, 120) == 0
        finally:
            if push.poll() is None:
                push.kill()

        await browser.goto(f"{dashboard.base}/apps/shop")
        page = await browser.evaluate("document.body.textContent")
        assert "API_TOKEN" in page and SECRET not in page
        await browser.screenshot(shots / "app.png")
        await browser.evaluate("document.querySelector('a[href=\"/apps/shop/rollback?version=1\"]').click()")
        await browser.wait_for("location.pathname === '/apps/shop/rollback'")
        await browser.screenshot(shots / "confirm-rollback.png")
        await browser.evaluate("document.querySelector('form[action=\"/apps/shop/rollback\"] button').click()")
        await browser.wait_for("location.pathname === '/apps/shop' && "
                               "document.body.textContent.includes('rollback to v1')", timeout=120)
        assert "releases:rollback" in await browser.evaluate("document.body.textContent")
        await browser.screenshot(shots / "app-after-rollback.png")
    assert deploy.get() == (200, "version one\n")

