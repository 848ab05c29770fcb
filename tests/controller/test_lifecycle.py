"""Push, and the app is serving: releases, health checks, config, scale, run, logs, domains, restart."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pexpect
import pytest

from controller.runtime.base import LOG_TIMESTAMP, split_log_timestamp
from core.config import StorageSettings
from tests.fixtures.tenancy import isolated
from tests.fixtures.teresa import Deploy, TeresaServer, http_get, make_deploy, scrape_metrics, wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "python-hello"
NEVER_READY = "healthCheck:\n  readiness:\n    path: /never\n    periodSeconds: 1\n    failureThreshold: 1\n"


def example_files() -> dict[str, str]:
    files = {p.name: p.read_text() for p in EXAMPLE.iterdir() if p.is_file()}
    files["teresa.yaml"] = files["teresa.yaml"].replace("periodSeconds: 2", "periodSeconds: 1")
    return files


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, ssh_keys: dict[str, Path]) -> Iterator[Deploy]:
    """One deployed python-hello for the module's tests, which run in order and build on each other."""
    tmp = tmp_path_factory.mktemp("lifecycle")
    storage = StorageSettings(type="local", root=tmp / "storage")
    yield from make_deploy(tmp, storage, ssh_keys, TERESA_ROLLOUT_TIMEOUT="15")


def releases(app: Deploy) -> list[dict]:
    status, out, err = app.command("releases shop --json")
    assert status == 0, err
    return json.loads(out)


def test_push_of_a_python_app_with_a_readiness_check_serves_through_the_router(app: Deploy) -> None:
    app.git.commit(example_files())
    push = app.git.push("shop")
    assert push.returncode == 0, push.stderr
    assert "release phase: nothing to migrate" in push.stderr
    assert "Released v1: http://shop.localhost" in push.stderr
    status, body = app.get()
    assert status == 200 and body.startswith("Hello from web.1")


def test_a_release_that_never_becomes_ready_is_rejected_and_the_old_one_serves(app: Deploy) -> None:
    app.git.commit({"teresa.yaml": NEVER_READY})
    push = app.git.push("shop")
    assert push.returncode != 0
    assert "(rollout failed)" in push.stderr
    assert "did not become ready" in push.stderr and "/never" in push.stderr
    assert app.get()[0] == 200
    assert [(r["version"], r["status"], r["running"]) for r in releases(app)][:2] == [
        ("v2", "failed", False), ("v1", "succeeded", True)]
    app.git.git("reset", "-q", "--hard", "HEAD~1")


def test_a_failing_release_phase_rejects_the_push(app: Deploy) -> None:
    procfile = "web: python app.py\nrelease: python -c 'import sys; print(\"migration broke\"); sys.exit(4)'\n"
    app.git.commit({"Procfile": procfile})
    push = app.git.push("shop")
    assert "(release phase failed)" in push.stderr and "migration broke" in push.stderr
    assert app.get()[0] == 200
    app.git.git("reset", "-q", "--hard", "HEAD~1")


def test_config_set_makes_a_release_the_app_sees_and_values_stay_masked(app: Deploy) -> None:
    status, out, err = app.command("config:set shop GREETING=Howdy 'API_TOKEN=s3cr3t value'")
    assert status == 0, err
    assert "s3cr3t" not in out + err and "Released v" in out
    assert app.get()[1].startswith("Howdy from web.")
    shown = app.command("config shop")[1]
    assert "API_TOKEN" in shown and "s3cr3t" not in shown
    assert json.loads(app.command("config shop --json --reveal")[1])["API_TOKEN"] == "s3cr3t value"
    assert app.command("config:set shop PORT=1")[2] == \
        "error: PORT is reserved: Teresa sets it for every process; choose another name.\n"
    assert releases(app)[0]["reason"] == "config: set API_TOKEN, GREETING"


def test_a_config_change_whose_release_phase_fails_changes_nothing(app: Deploy) -> None:
    release = ("release: python -c \"import os, sys; print('migrating'); "
               "sys.exit(3 if os.environ.get('BREAK_MIGRATION') else 0)\"\n")
    app.git.commit({"Procfile": "web: python app.py\n" + release})
    assert app.git.push("shop").returncode == 0
    status, out, err = app.command("config:set shop BREAK_MIGRATION=1")
    assert status == 1 and err.startswith("error: The release command of v") and "exit status 3" in err
    assert err.count("\n") == 1
    assert "BREAK_MIGRATION" not in json.loads(app.command("config shop --json")[1])
    assert app.get()[0] == 200


def test_scale_up_and_down(app: Deploy) -> None:
    assert app.command("ps:scale shop web=2")[0] == 0
    processes = json.loads(app.command("ps shop --json")[1])
    assert len([p for p in processes if p["state"] == "up"]) == 2
    bodies = {app.get()[1].split(" from ")[1].split(" ")[0] for _ in range(8)}
    assert len(bodies) == 2  # the router balances across both replicas
    assert app.command("ps:scale shop web=1")[0] == 0
    assert app.command("ps:scale shop worker=1")[2].startswith("error: shop has no process type 'worker'")


def test_rollback_restores_the_previous_build_and_config(app: Deploy) -> None:
    before = releases(app)[0]["version"]
    status, out, err = app.command("releases:rollback shop v1")
    assert status == 0, err
    assert app.get()[1].startswith("Hello from")  # v1 had no GREETING
    newest = releases(app)[0]
    assert newest["reason"] == "rollback to v1" and newest["running"]
    assert int(newest["version"][1:]) == int(before[1:]) + 1
    assert "GREETING" not in json.loads(app.command("config shop --json")[1])


def test_run_streams_output_and_propagates_the_exit_status(app: Deploy) -> None:
    result = app.ssh.run("run shop -- sh -c 'echo from a one-off $DYNO; exit 3'", key=app.key)
    assert result.returncode == 3
    assert b"from a one-off run.1" in result.stdout


def test_run_forwards_stdin(app: Deploy) -> None:
    result = app.ssh.run("run shop -- sh -c 'read first; cat; echo \"first=$first\"'", key=app.key,
                         stdin=b"one\ntwo\nthree\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"two\nthree\nfirst=one\n"


def test_ssh_t_run_gives_an_interactive_shell_that_exits_with_its_status(app: Deploy) -> None:
    shell = pexpect.spawn("ssh", [*app.ssh.options(app.key), "-t", "git@127.0.0.1", "run shop -- sh"],
                          env=app.ssh.env(None), timeout=60, encoding="utf-8")
    try:
        shell.expect(r"[$#] $")  # sh's prompt: it found a terminal, so it is interactive
        shell.sendline("tty; echo \"dyno=$DYNO term=$TERM\"")
        shell.expect(r"/dev/pts/\d+\r\n")
        shell.expect(r"dyno=run\.\d+ term=\S+\r\n")
        shell.expect(r"[$#] $")
        shell.sendline("exit 5")
        shell.expect(pexpect.EOF)
    finally:
        shell.close()
    assert shell.exitstatus == 5


def test_every_command_still_works_when_the_client_asks_for_a_terminal(app: Deploy) -> None:
    argv = ["ssh", *app.ssh.options(app.key), "-tt", "git@127.0.0.1", "apps:list"]
    result = subprocess.run(argv, capture_output=True, timeout=60, env=app.ssh.env(None))
    assert result.returncode == 0, result.stderr
    assert b"shop" in result.stdout and b"\r\n" in result.stdout and b"\r\r" not in result.stdout
    missing = subprocess.run([*argv[:-1], "apps:info", "nosuch"], capture_output=True, timeout=60,
                             env=app.ssh.env(None))
    assert missing.returncode == 1 and b"nosuch" in missing.stderr


def test_logs_follow_streams_until_the_client_leaves(app: Deploy) -> None:
    argv = ["ssh", *app.ssh.options(app.key), "git@127.0.0.1", "logs shop -f -n 0 -p web"]
    follower = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    seen = threading.Event()

    def keep_requesting() -> None:  # until the follower shows one: it may attach after the first request
        while not seen.wait(0.2):
            app.get("/followed")

    threading.Thread(target=keep_requesting, daemon=True).start()
    try:
        for line in follower.stdout:
            if "GET /followed" in line:
                stamp, text = split_log_timestamp(line)
                assert LOG_TIMESTAMP.fullmatch(stamp) and text.startswith("web.")
                break
    finally:
        seen.set()
        follower.kill()
        follower.wait()


def test_custom_domains_route_to_the_app(app: Deploy) -> None:
    assert app.command("domains:add shop www.shop.test")[0] == 0
    assert app.get(host="www.shop.test")[0] == 200
    assert app.command("domains:add shop www.shop.test")[2] == "error: www.shop.test is already routed to this app.\n"
    assert app.command("domains:remove shop www.shop.test")[0] == 0
    assert app.get(host="www.shop.test")[0] == 404


def test_domains_tls_takes_a_secret_name_or_off_in_one_sentence(app: Deploy) -> None:
    assert app.command("domains:tls shop")[2] == (
        "error: domains:tls needs either --secret NAME (a TLS Secret in the app's namespace) or --off.\n")
    assert app.command("domains:tls shop --secret Shop_TLS")[2] == (
        "error: 'Shop_TLS' is not a Secret name; use lowercase letters, digits, '-' and '.'.\n")
    assert app.command("domains:tls shop --secret shop-tls")[:2] == (
        0, "shop's hosts are served over TLS with the Secret shop-tls.\n")
    assert app.command("domains:tls shop --off")[:2] == (0, "shop no longer uses its own TLS Secret; its hosts get "
                                                           "no TLS from Teresa.\n")
    assert app.get()[0] == 200  # the local runtime's router serves on as it did


def test_a_server_restart_brings_the_app_back(app: Deploy) -> None:
    app.command("domains:add shop www.shop.test")
    running = releases(app)[0]["version"]
    app.server.stop()
    app.server = TeresaServer(app.server.env)
    app.ssh.server = app.server
    app.server.call(app.server.runtime.wait_restored())
    wait_for(lambda: app.get()[0] == 200)  # restored processes start, then pass their readiness check
    assert app.get(host="www.shop.test")[0] == 200
    assert releases(app)[0]["version"] == running


def test_health_and_metrics_of_the_running_server(app: Deploy) -> None:
    port = app.server.server.http_port
    assert http_get(port, "teresa", "/healthz") == (200, "ok\n")
    assert http_get(port, "teresa", "/readyz")[0] == 200
    assert http_get(port, "teresa", "/metrics")[0] == 401
    status, text = scrape_metrics(app.server)
    assert status == 200
    for series in ('teresa_pushes_total{outcome="succeeded"}', 'teresa_pushes_total{outcome="failed"}',
                   'teresa_releases_total{app="shop",outcome="succeeded"}', "teresa_ssh_sessions_total",
                   "teresa_build_duration_seconds_count"):
        assert series in text, series


def test_an_app_process_gets_no_metrics_and_cannot_read_their_token(app: Deploy) -> None:
    """Tenant code shares the server's network on the local runtime: /metrics (every app's names and outcomes)
    answers it 401, and the token's file, in the data directory, is not in its sandbox."""
    token = app.server.settings.data_dir / "metrics-token"
    script = (f"import urllib.request as u\ntry: u.urlopen('http://127.0.0.1:{app.server.server.http_port}/metrics')\n"
              "except Exception as e: print('metrics', getattr(e, 'code', e))\n"
              f"try: open('{token}'); print('token read')\nexcept OSError as e: print('token', type(e).__name__)")
    result = app.ssh.run(f"run shop -- python3 -c {shlex.quote(f'exec({script!r})')}", key=app.key)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "metrics 401"
    if isolated():  # per-app users: the data directory is absent from the app's sandbox
        assert lines[1] != "token read"


def test_apps_destroy_stops_everything_and_removes_storage(app: Deploy) -> None:
    storage = app.server.settings.storage.root
    assert any((storage / "apps" / "shop").rglob("slug.tgz"))
    assert app.command("apps:destroy shop --confirm shop")[0] == 0
    assert app.get()[0] == 404
    assert not (storage / "apps" / "shop").exists()
    assert shutil.which("git")  # keep the import list honest
