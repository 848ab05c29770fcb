"""A broken push never takes the app down: apps shaped like Heroku's, pushed with real git and ssh.

A gunicorn app whose Procfile names the wrong `module:app`, and an app that listens on
a fixed port instead of $PORT, are each rejected within 30 seconds of their rollout's
start (the rollout timeout is left at its five minutes), with the cause in the push's
output, and the previous release keeps serving.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Iterator

import pytest

from core.config import StorageSettings
from tests.fixtures.teresa import Deploy, make_deploy

BOUND = 30  # seconds, from the issue: a broken release is rejected within this long
WSGI = '''def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"gunicorn %s\\n"]
'''


def gunicorn_app(procfile: str, version: str) -> dict[str, str]:
    return {"requirements.txt": "gunicorn==27.0.1\n", "main.py": WSGI % version, "Procfile": procfile}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, ssh_keys: dict[str, Path]) -> Iterator[Deploy]:
    tmp = tmp_path_factory.mktemp("broken")
    yield from make_deploy(tmp, StorageSettings(type="local", root=tmp / "storage"), ssh_keys)


def push_timed(app: Deploy) -> tuple[int, str, float]:
    """Push; return git's exit status, its output, and the seconds from the rollout's start to the end."""
    push = app.git.popen_push("shop")
    assert push.stderr is not None
    seen, rollout_started = [], None
    for line in push.stderr:
        seen.append(line)
        if "-----> Rolling out" in line:
            rollout_started = time.monotonic()
    status = push.wait(300)
    assert rollout_started is not None, "".join(seen)
    return status, "".join(seen), time.monotonic() - rollout_started


def assert_v1_still_serves(app: Deploy) -> None:
    assert app.get() == (200, "gunicorn one\n")
    history = json.loads(app.command("releases shop --json")[1])
    assert history[0]["status"] == "failed"
    assert [r["version"] for r in history if r["running"]] == ["v1"]
    app.git.git("reset", "-q", "--hard", "HEAD~1")


def test_a_working_gunicorn_app_deploys(app: Deploy) -> None:
    app.git.commit(gunicorn_app("web: gunicorn main:app\n", "one"))
    push = app.git.push("shop")
    assert push.returncode == 0, push.stderr
    assert app.get() == (200, "gunicorn one\n")


def test_run_beside_a_serving_gunicorn_copies_the_release_but_not_its_control_socket(app: Deploy) -> None:
    """gunicorn keeps a control socket (.gunicorn/gunicorn.ctl) in the release directory while it serves; the
    one-off's copy of that directory used to stop at it, so every `run` of such an app failed."""
    serving = app.server.runtime.tenancy.releases_dir("shop") / "v1"
    assert [p for p in serving.rglob("*") if p.is_socket()], "gunicorn made no socket here: the test tests nothing"
    result = app.ssh.run("run shop -- sh -c 'find . -type s -o -type p | wc -l; head -1 main.py'", key=app.key)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == ["0", "def", "app(environ,", "start_response):"]


def test_gunicorn_with_a_wrong_module_is_rejected_with_gunicorns_error(app: Deploy) -> None:
    app.git.commit(gunicorn_app("web: gunicorn mian:app\n", "two"))
    status, output, seconds = push_timed(app)
    assert status != 0 and "(rollout failed)" in output
    assert "v2 was not released: web.1 exited with status 3 before it became ready" in output
    assert "No module named 'mian'" in output and "Reason: Worker failed to boot." in output
    assert seconds < BOUND, output
    assert_v1_still_serves(app)


def test_an_app_on_a_fixed_port_is_rejected_naming_port(app: Deploy) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        fixed = probe.getsockname()[1]
    app.git.commit(gunicorn_app(f"web: gunicorn --bind 127.0.0.1:{fixed} main:app\n", "three"))
    status, output, seconds = push_timed(app)
    assert status != 0 and "(rollout failed)" in output
    assert f"web.1 listens on port {fixed} but not on $PORT (" in output
    assert f"Listening at: http://127.0.0.1:{fixed}" in output
    assert seconds < BOUND, output
    assert_v1_still_serves(app)
