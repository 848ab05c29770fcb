"""Notifications end to end: real pushes and a crash loop on the local runtime, a real HTTP receiver on loopback.

The tests run in order on one deployed app and build on each other.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Iterator

import pytest

from controller.notifications.sender import SIGNATURE_HEADER, verify
from core.config import StorageSettings
from tests.fixtures.receiver import Receiver
from tests.fixtures.teresa import Deploy, TeresaServer, make_deploy, scrape_metrics, wait_for
from tests.gitreceiver.conftest import LATE_CRASHING_WORKER, WEB_APP

RETRY_BASE = 0.2


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def mailbox() -> Iterator[list[bytes]]:
    from aiosmtpd.controller import Controller

    received: list[bytes] = []

    class Sink:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            received.append(envelope.content)  # type: ignore[attr-defined]
            return "250 OK"

    port = closed_port()
    smtp = Controller(Sink(), hostname="127.0.0.1", port=port)
    smtp.start()
    received.append(str(port).encode())  # read (and removed) by the app fixture, for TERESA_SMTP_URL
    yield received
    smtp.stop()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, ssh_keys: dict[str, Path], mailbox: list[bytes]) -> Iterator[Deploy]:
    tmp = tmp_path_factory.mktemp("notifications")
    port = mailbox.pop(0).decode()
    yield from make_deploy(tmp, StorageSettings(type="local", root=tmp / "storage"), ssh_keys,
                           TERESA_NOTIFICATIONS_ALLOW_PRIVATE="true", TERESA_NOTIFICATIONS_RETRY_BASE=str(RETRY_BASE),
                           TERESA_NOTIFICATIONS_MAX_ATTEMPTS="6", TERESA_CRASHLOOP_INTERVAL="0.2",
                           TERESA_CRASHLOOP_RESTARTS="2", TERESA_CRASHLOOP_WINDOW="30",
                           TERESA_SMTP_URL=f"smtp://127.0.0.1:{port}?from=teresa@example.com")


def add(app: Deploy, scope: str, url: str, *options: str) -> str:
    status, out, err = app.command(f"notifications:add {scope} {url} {' '.join(options)}")
    assert status == 0, err
    secret = re.search(r"verify X-Teresa-Signature with it\): ([0-9a-f]{64})$", out, re.M)
    return secret[1] if secret else ""


def deliveries(app: Deploy, scope: str = "") -> list[dict]:
    status, out, err = app.command(f"notifications:deliveries {scope} --json")
    assert status == 0, err
    return json.loads(out)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_deploy_delivers_one_signed_event(app: Deploy, receiver: Receiver, mailbox: list[bytes]) -> None:
    secret = add(app, "web", receiver.url("/team"))
    assert add(app, "shop", "email:ops@example.com", "--events", "deploy") == ""
    app.git.commit(WEB_APP)
    push = app.git.push("shop")
    assert push.returncode == 0, push.stderr

    [hook] = wait_for(lambda: receiver.on("/team"))
    assert verify(secret, hook.body, hook.headers[SIGNATURE_HEADER])
    event = hook.json
    assert {k: event[k] for k in ("app", "event", "release", "who", "reason")} == {
        "app": "shop", "event": "deploy", "release": "v1", "who": "dev@example.com", "reason": "push"}
    assert event["when"].endswith("Z") and hook.headers["X-Teresa-Event"] == "deploy"
    # What a receiver checks: another secret, or a changed body, does not verify.
    assert not verify("0" * 64, hook.body, hook.headers[SIGNATURE_HEADER])
    assert not verify(secret, hook.body.replace(b"shop", b"shoq"), hook.headers[SIGNATURE_HEADER])

    [mail] = wait_for(lambda: list(mailbox))
    assert b"Subject: [teresa] shop v1: deploy" in mail and b"To: ops@example.com" in mail
    wait_for(lambda: {d["status"] for d in deliveries(app)} == {"delivered"})
    assert len(receiver.on("/team")) == 1


def test_a_failed_build_delivers_one_build_failed_event(app: Deploy, receiver: Receiver) -> None:
    secret = add(app, "shop", receiver.url("/failures"), "--events", "build-failed,release-failed")
    app.git.commit({"Procfile": "this is not a procfile line\n"})
    assert "(build failed)" in app.git.push("shop").stderr

    [hook] = wait_for(lambda: receiver.on("/failures"))
    assert verify(secret, hook.body, hook.headers[SIGNATURE_HEADER])
    assert (hook.json["event"], hook.json["release"], hook.json["who"]) == ("build-failed", None, "dev@example.com")
    assert hook.json["reason"].startswith("build failed: ") and "\n" not in hook.json["reason"]
    assert [e.json["event"] for e in receiver.on("/team")] == ["deploy", "build-failed"]
    app.git.git("reset", "-q", "--hard", "HEAD~1")


def test_a_crash_looping_process_is_notified_once_per_episode(app: Deploy, receiver: Receiver) -> None:
    secret = add(app, "shop", receiver.url("/crashes"), "--events", "crash")
    app.git.commit({"Procfile": WEB_APP["Procfile"] + LATE_CRASHING_WORKER})
    assert app.git.push("shop").returncode == 0
    status, _, err = app.command("ps:scale shop worker=1")
    assert status == 0, err

    [hook] = wait_for(lambda: receiver.on("/crashes"))
    assert verify(secret, hook.body, hook.headers[SIGNATURE_HEADER])
    assert (hook.json["app"], hook.json["event"], hook.json["who"]) == ("shop", "crash", None)
    assert hook.json["reason"].startswith("worker is crash-looping: ")
    assert 'teresa_crashlooping_processes{app="shop"} 1.0' in scrape_metrics(app.server)[1]

    def restarts() -> int:
        return max(p["restarts"] for p in json.loads(app.command("ps shop --json")[1]) if p["type"] == "worker")

    first = restarts()
    wait_for(lambda: restarts() >= first + 2, timeout=60)  # the loop goes on ...
    assert len(receiver.on("/crashes")) == 1  # ... and is told once

    assert app.command("ps:scale shop worker=0")[0] == 0
    wait_for(lambda: "teresa_crashlooping_processes{" not in scrape_metrics(app.server)[1])


def test_a_receiver_that_is_down_gets_retries_and_the_push_is_not_slowed(app: Deploy, receiver: Receiver) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/hook"
    add(app, "shop", dead, "--events", "deploy")
    add(app, "shop", receiver.url("/fail/3"), "--events", "deploy")
    add(app, "shop", receiver.url("/stall"), "--events", "deploy")

    app.git.commit({"index.html": "version two\n"})
    push = app.git.push("shop")
    assert push.returncode == 0, push.stderr
    # The push has returned; the stalling receiver may still hold its delivery, which is not done.
    wait_for(lambda: receiver.on("/stall"))
    stalled = [d for d in deliveries(app, "shop") if d["url"].endswith("/stall")]
    assert stalled[0]["status"] == "pending" and stalled[0]["attempts"] == 0
    receiver.release.set()

    # A failing receiver is tried again, each wait twice the one before.
    wait_for(lambda: len(receiver.on("/fail/3")) >= 4)
    arrivals = [r.at for r in receiver.on("/fail/3")]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert all(gap >= RETRY_BASE * 2 ** i * 0.9 for i, gap in enumerate(gaps)), gaps
    flaky = wait_for(lambda: [d for d in deliveries(app, "shop")
                              if d["url"].endswith("/fail/3") and d["status"] == "delivered"])
    assert flaky[0]["attempts"] == 4 and flaky[0]["last_result"] == "HTTP 204"

    # A receiver that is not there at all: retried, with the reason listed.
    down = wait_for(lambda: [d for d in deliveries(app, "shop") if d["url"] == dead and d["attempts"] >= 3])
    assert down[0]["status"] in ("pending", "failed") and "refused" in down[0]["last_result"].lower()
    out = app.command("notifications:deliveries shop")[1]
    assert "STATUS" in out and "delivered" in out and dead in out


def test_queued_deliveries_survive_a_restart(app: Deploy, receiver: Receiver) -> None:
    receiver.down.set()
    add(app, "shop", receiver.url("/down"), "--events", "deploy")
    assert app.command("config:set shop GREETING=hi")[0] == 0
    wait_for(lambda: receiver.on("/down"))
    pending = [d for d in deliveries(app, "shop") if d["url"].endswith("/down")]
    assert pending[0]["status"] == "pending" and pending[0]["last_result"] == "HTTP 503"

    app.server.stop()
    receiver.down.clear()
    app.server = TeresaServer(app.server.env)
    app.ssh.server = app.server
    delivered = wait_for(lambda: [d for d in deliveries(app, "shop")
                                  if d["url"].endswith("/down") and d["status"] == "delivered"])
    assert delivered[0]["id"] == pending[0]["id"]
    assert receiver.on("/down")[-1].json["reason"] == "config: set GREETING"


def test_targets_are_listed_and_removed_and_private_addresses_need_the_operator(app: Deploy) -> None:
    listed = json.loads(app.command("notifications shop --json")[1])
    assert {t["scope"] for t in listed} == {"app shop", "team web"}
    assert all("secret" not in t for t in listed)
    team = next(t for t in listed if t["scope"] == "team web")
    assert app.command(f"notifications:remove {team['id']}")[0] == 0
    assert team["id"] not in [t["id"] for t in json.loads(app.command("notifications --json")[1])]
    status, _, err = app.command("notifications:add shop https://hooks.example.com/x --events deploy,nonsense")
    assert status != 0 and "'nonsense' is not an event" in err
    status, _, err = app.command("notifications:add nosuch https://hooks.example.com/x")
    assert status != 0 and "no team or app named 'nosuch'" in err


def test_a_delivery_to_a_name_that_now_resolves_privately_is_refused_at_sending() -> None:
    import asyncio

    import aiohttp

    from controller.notifications.queue import Claimed
    from controller.notifications.sender import send
    from controller.notifications.targets import GuardedResolver

    async def attempt(url: str) -> str:
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow_private=False))
        async with aiohttp.ClientSession(connector=connector) as http:
            outcome = await send(Claimed(1, url, "s" * 64, "deploy", "{}", 0), http=http, smtp=None, timeout=5,
                                 allow_private=False)
        assert not outcome.ok
        return outcome.result

    assert "not a public address" in asyncio.run(attempt(f"http://localhost:{closed_port()}/"))
    assert "not a public address" in asyncio.run(attempt(f"http://127.0.0.1:{closed_port()}/"))
