"""`git push` with the real git and ssh clients: builds, live output, rejections, locks."""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
from pathlib import Path

from sqlalchemy import select

from builder.slugmeta import slug_digest
from core.models import Release
from tests.fixtures.leases import take_over
from tests.fixtures.tenancy import reachable_by_apps
from tests.fixtures.teresa import make_deploy, read_until, wait_for
from tests.gitreceiver.conftest import BUILDPACKS, WEB_APP, Deploy


def gated_build(deploy: Deploy, tmp_path: Path) -> Path:
    """Builds of the app now print a line, then wait until the returned file exists."""
    go_ahead = reachable_by_apps() / "go-ahead"
    status, _, err = deploy.command(f"config:set shop BUILDPACK_URL={BUILDPACKS / 'wait_for_file'} "
                                    f"GO_AHEAD_FILE={go_ahead}")
    assert status == 0, err
    return go_ahead


def test_first_push_builds_releases_and_serves(deploy_any_storage: Deploy) -> None:
    deploy = deploy_any_storage
    commit = deploy.git.commit(WEB_APP)
    push = deploy.git.push("shop")
    assert push.returncode == 0, push.stderr
    assert "remote: -----> Building shop main" in push.stderr
    assert "remote: -----> Released v1: http://shop.localhost" in push.stderr
    assert re.search(r"remote: -----> Done in \d+\.\ds: receive \d+\.\ds, build \d+\.\ds, release \d+\.\ds, "
                     r"rollout \d+\.\ds", push.stderr), push.stderr
    assert deploy.git.remote_refs("shop")["refs/heads/main"] == commit
    assert deploy.get() == (200, "version one\n")

    status, out, _ = deploy.command("builds shop --json")
    build = json.loads(out)[0]
    assert (build["status"], build["commit"], build["user"]) == ("succeeded", commit, "dev@example.com")
    _, output, _ = deploy.command("builds:output shop")
    assert "-----> Released v1" in output
    # the slug's digest as stored when the build ended, kept with the release: fetches are checked against it
    services = deploy.server.services
    key, digest = deploy.server.call(services.db.run(lambda s: tuple(s.execute(select(Release.slug_key,
                                                                                      Release.slug_digest)).one())))
    assert re.fullmatch(r"[0-9a-f]{64}", digest) and digest == slug_digest(services.storage, key)


def test_build_lines_reach_the_client_while_the_build_runs(deploy_any_storage: Deploy, tmp_path: Path) -> None:
    deploy = deploy_any_storage
    go_ahead = gated_build(deploy, tmp_path)
    deploy.git.commit(WEB_APP)
    push = deploy.git.popen_push("shop")
    seen = read_until(push, "waiting for the go-ahead")  # git prints remote: lines on its stderr as they arrive
    assert push.poll() is None, "the push finished before the build was allowed to"
    go_ahead.touch()
    rest = push.stderr.read()
    assert push.wait(120) == 0, "".join(seen) + rest
    assert "got the go-ahead" in rest and "Released v1" in rest


def test_failed_build_rejects_the_push_and_a_fixed_commit_deploys(deploy_any_storage: Deploy) -> None:
    deploy = deploy_any_storage
    deploy.git.commit(WEB_APP)
    assert deploy.git.push("shop").returncode == 0
    before = deploy.git.remote_refs("shop")

    deploy.git.commit({"Procfile": "this is not a procfile line\n"})
    failed = deploy.git.push("shop")
    assert failed.returncode != 0
    assert "! [remote rejected] main -> main (build failed)" in failed.stderr
    assert "Procfile" in failed.stderr  # the builder's last lines say what is wrong
    assert deploy.git.remote_refs("shop") == before
    assert deploy.get() == (200, "version one\n")

    deploy.git.commit({"Procfile": WEB_APP["Procfile"], "index.html": "version two\n"})
    fixed = deploy.git.push("shop")
    assert fixed.returncode == 0, fixed.stderr
    assert deploy.get() == (200, "version two\n")
    status, out, _ = deploy.command("builds shop --json")
    assert [b["status"] for b in json.loads(out)] == ["succeeded", "failed", "succeeded"]


def test_a_second_push_during_a_deploy_is_refused_and_the_first_completes(deploy: Deploy, tmp_path: Path) -> None:
    go_ahead = gated_build(deploy, tmp_path)
    deploy.git.commit(WEB_APP)
    first = deploy.git.popen_push("shop")
    read_until(first, "waiting for the go-ahead")
    second = deploy.git.push("shop")
    assert second.returncode != 0
    assert "dev@example.com started a deploy of shop at" in second.stderr
    assert "(deploy in progress)" in second.stderr
    go_ahead.touch()
    assert first.wait(120) == 0, first.stderr.read()


def test_domains_wait_for_a_rollout_in_flight_which_would_route_its_own_list(deploy: Deploy, tmp_path: Path) -> None:
    go_ahead = reachable_by_apps() / "ready"
    assert deploy.command(f"config:set shop GO_AHEAD_FILE={go_ahead}")[0] == 0
    waits = "while [ ! -e \"$GO_AHEAD_FILE\" ]; do sleep 0.1; done; "  # not ready (not listening) until told
    deploy.git.commit({**WEB_APP, "Procfile": f"web: sh -c '{waits}exec {WEB_APP['Procfile'][5:].strip()}'\n"})
    push = deploy.git.popen_push("shop")
    read_until(push, "Rolling out v1")
    status, out, err = deploy.command("domains:add shop www.shop.test")
    assert (status, out) == (1, "")
    assert re.fullmatch(r"error: dev@example\.com started a deploy of shop at [-0-9: ]+ UTC; wait for it to finish, "
                        r"then try again\.\n", err), err
    go_ahead.touch()
    assert push.wait(120) == 0, push.stderr.read()
    assert deploy.command("domains:add shop www.shop.test")[0] == 0
    assert deploy.get(host="www.shop.test") == (200, "version one\n")


def test_killing_the_client_mid_build_releases_the_lock(deploy: Deploy, tmp_path: Path) -> None:
    go_ahead = gated_build(deploy, tmp_path)
    deploy.git.commit(WEB_APP)
    doomed = subprocess.Popen(["git", "push", deploy.git.remote("shop"), "main"], cwd=deploy.git.workdir,
                              env=deploy.git.env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    read_until(doomed, "waiting for the go-ahead")
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()

    def cancelled() -> bool:
        _, out, _ = deploy.command("builds shop --json")
        return json.loads(out)[0]["status"] == "cancelled"

    wait_for(cancelled)
    go_ahead.touch()
    push = deploy.git.push("shop")
    assert push.returncode == 0, push.stderr


def test_a_deploy_whose_lock_another_server_took_over_stops_before_it_writes(tmp_path: Path, local_storage,
                                                                             ssh_keys: dict[str, Path]) -> None:
    for deploy in make_deploy(tmp_path, local_storage, ssh_keys, TERESA_DEPLOY_LEASE_SECONDS="3"):
        gated_build(deploy, tmp_path)  # never given the go-ahead: the build runs until it is stopped
        deploy.git.commit(WEB_APP)
        push = deploy.git.popen_push("shop")
        read_until(push, "waiting for the go-ahead")
        take_over(deploy.server.services.db, "deploy:shop")  # as replica B does once A's lease expired
        rest = push.stderr.read()
        assert push.wait(60) != 0
        assert ("remote:  !     The deploy of shop was stopped: this server lost the app's deploy lock (another "
                "server took it over, or the database could not be reached to renew it); run: releases shop, "
                "then try again.") in rest
        assert "! [remote rejected] main -> main (deploy lock lost)" in rest
        assert "Released" not in rest and "refs/heads/main" not in deploy.git.remote_refs("shop")
        build = json.loads(deploy.command("builds shop --json")[1])[0]
        assert (build["status"], build["reason"]) == ("abandoned", "deploy lock lost")
        assert json.loads(deploy.command("releases shop --json")[1]) == []


def test_a_build_that_outlives_its_timeout_is_recorded_as_timed_out(tmp_path: Path, local_storage,
                                                                   ssh_keys: dict[str, Path]) -> None:
    for deploy in make_deploy(tmp_path, local_storage, ssh_keys, TERESA_BUILD_TIMEOUT="3"):
        gated_build(deploy, tmp_path)  # never given the go-ahead
        deploy.git.commit(WEB_APP)
        push = deploy.git.push("shop")
        assert ("remote:  !     The build took longer than 3 seconds and was stopped; make it faster or raise "
                "TERESA_BUILD_TIMEOUT.") in push.stderr
        assert "! [remote rejected] main -> main (build failed)" in push.stderr
        build = json.loads(deploy.command("builds shop --json")[1])[0]
        assert (build["status"], build["reason"]) == ("timed-out", "build failed")


def test_push_to_an_app_of_another_team_is_refused(deploy: Deploy, ssh_keys: dict[str, Path]) -> None:
    deploy.server.local("teams:create", "other")
    deploy.server.local("apps:create", "secret", "--team", "other")
    deploy.git.commit(WEB_APP)
    push = deploy.git.push("secret")
    assert push.returncode != 0
    assert "app 'secret' does not exist; create it with: apps:create secret" in push.stderr
    missing = deploy.git.push("nosuchapp")
    assert "app 'nosuchapp' does not exist; create it with: apps:create nosuchapp" in missing.stderr


def test_other_branches_are_stored_but_not_built(deploy: Deploy) -> None:
    commit = deploy.git.commit(WEB_APP)
    deploy.git.git("branch", "feature")
    push = deploy.git.push("shop", "feature")
    assert push.returncode == 0, push.stderr
    assert "Stored feature; not deployed" in push.stderr
    assert deploy.git.remote_refs("shop")["refs/heads/feature"] == commit
    assert json.loads(deploy.command("builds shop --json")[1]) == []


def test_force_push_deploys_and_an_unchanged_push_does_nothing(deploy: Deploy) -> None:
    deploy.git.commit(WEB_APP)
    assert deploy.git.push("shop").returncode == 0
    again = deploy.git.push("shop")
    assert again.returncode == 0 and "Everything up-to-date" in again.stderr

    deploy.git.git("commit", "--amend", "-q", "-m", "rewritten history")  # the pushed commit, rewritten
    deploy.git.commit({"index.html": "rewritten\n"})
    plain = deploy.git.push("shop")
    assert plain.returncode != 0 and "rejected" in plain.stderr  # git itself refuses a non-fast-forward
    forced = deploy.git.push("shop", force=True)
    assert forced.returncode == 0, forced.stderr
    assert deploy.get() == (200, "rewritten\n")
    assert len(json.loads(deploy.command("builds shop --json")[1])) == 2


def test_members_can_clone_what_they_pushed(deploy: Deploy, tmp_path: Path) -> None:
    commit = deploy.git.commit(WEB_APP)
    deploy.git.push("shop")
    clone = subprocess.run(["git", "clone", "-q", deploy.git.remote("shop"), str(tmp_path / "clone")],
                           env=deploy.git.env, capture_output=True, text=True, timeout=60)
    assert clone.returncode == 0, clone.stderr
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path / "clone", capture_output=True, text=True)
    assert head.stdout.strip() == commit


def _pack_request(deploy: Deploy, old: str, new: str, pack: bytes) -> subprocess.CompletedProcess[bytes]:
    """Speak receive-pack by hand through the real ssh client: one ref update, then `pack`."""
    line = f"{old} {new} refs/heads/main\0report-status side-band-64k\n".encode()
    request = f"{len(line) + 4:04x}".encode() + line + b"0000" + pack
    argv = ["ssh", *deploy.ssh.options(deploy.key), "git@127.0.0.1", "git-receive-pack '/shop.git'"]
    return subprocess.run(argv, input=request, capture_output=True, timeout=60)


def test_malformed_or_truncated_packs_leave_the_repository_intact(deploy: Deploy, tmp_path: Path) -> None:
    old = deploy.git.commit(WEB_APP)
    assert deploy.git.push("shop").returncode == 0
    new = deploy.git.commit({"index.html": "never arrives\n"})
    pack = subprocess.run(["git", "pack-objects", "--stdout", "--revs"], cwd=deploy.git.workdir,
                          input=f"{new}\n^{old}\n".encode(), capture_output=True, check=True).stdout

    garbage = _pack_request(deploy, old, new, b"PACK" + b"\x00\x00\x00\x02" + os.urandom(200))
    truncated = _pack_request(deploy, old, new, pack[: len(pack) // 2])
    for attempt in (garbage, truncated):
        assert b"Traceback" not in attempt.stderr

    assert deploy.git.remote_refs("shop")["refs/heads/main"] == old
    clone = tmp_path / "check"
    subprocess.run(["git", "clone", "-q", deploy.git.remote("shop"), str(clone)], env=deploy.git.env, check=True,
                   timeout=60)
    fsck = subprocess.run(["git", "fsck", "--full"], cwd=clone, capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr
    assert json.loads(deploy.command("builds shop --json")[1])[0]["commit"] == old  # no build for the bad packs


def test_a_push_over_the_size_limit_is_refused_with_the_limit_named(tmp_path: Path, local_storage,
                                                                  ssh_keys: dict[str, Path]) -> None:
    for deploy in make_deploy(tmp_path, local_storage, ssh_keys, TERESA_MAX_PUSH_BYTES="20000"):
        deploy.git.commit({**WEB_APP, "blob.bin": os.urandom(60000)})
        push = deploy.git.push("shop")
        assert push.returncode != 0
        assert "This push is larger than the 20000-byte limit (TERESA_MAX_PUSH_BYTES)" in push.stderr
        assert "! [remote rejected] main -> main (push too large)" in push.stderr
        assert "refs/heads/main" not in deploy.git.remote_refs("shop")


def test_a_silent_build_sends_keepalives(tmp_path: Path, local_storage, ssh_keys: dict[str, Path]) -> None:
    for deploy in make_deploy(tmp_path, local_storage, ssh_keys, TERESA_PUSH_KEEPALIVE_SECONDS="0.2"):
        go_ahead = gated_build(deploy, tmp_path)
        commit = deploy.git.commit(WEB_APP)
        pack = subprocess.run(["git", "pack-objects", "--stdout", "--revs"], cwd=deploy.git.workdir,
                              input=f"{commit}\n".encode(), capture_output=True, check=True).stdout
        line = f"{'0' * 40} {commit} refs/heads/main\0report-status side-band-64k\n".encode()
        argv = ["ssh", *deploy.ssh.options(deploy.key), "git@127.0.0.1", "git-receive-pack '/shop.git'"]
        client = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        client.stdin.write(f"{len(line) + 4:04x}".encode() + line + b"0000" + pack)
        client.stdin.flush()
        received = b""
        while received.count(b"0005\x01") < 3:  # empty band-1 packets, as git's own receive-pack sends
            chunk = client.stdout.read1(65536)
            assert chunk, received.decode("utf-8", "replace")
            received += chunk
        go_ahead.touch()
        received += client.stdout.read()
        client.wait(60)
        assert b"ok refs/heads/main" in received


def test_an_atomic_push_with_a_failing_deploy_branch_deploys_nothing(deploy: Deploy) -> None:
    deploy.git.commit(WEB_APP)
    assert deploy.git.push("shop").returncode == 0
    deploy.git.commit({"index.html": "version two\n"})
    deploy.git.git("checkout", "-q", "-b", "master")
    deploy.git.commit({"Procfile": "this is not a procfile line\n"})  # master's build would fail
    deploy.git.git("checkout", "-q", "main")
    before = deploy.git.remote_refs("shop")

    push = deploy.git.git("push", "--atomic", deploy.git.remote("shop"), "main", "master", check=False)
    assert push.returncode != 0
    assert "An atomic push may update one deploy branch (main or master); push them one at a time." in push.stderr
    # Before: main was built and released while dulwich was still checking master's update.
    assert deploy.get() == (200, "version one\n")
    assert deploy.git.remote_refs("shop") == before
    assert [r["version"] for r in json.loads(deploy.command("releases shop --json")[1])] == ["v1"]


def test_an_atomic_push_moves_other_branches_only_with_a_successful_deploy(deploy: Deploy) -> None:
    deploy.git.commit(WEB_APP)
    deploy.git.git("branch", "feature")
    deploy.git.commit({"Procfile": "this is not a procfile line\n"})
    push = deploy.git.git("push", "--atomic", deploy.git.remote("shop"), "main", "feature", check=False)
    assert push.returncode != 0 and "main -> main (build failed)" in push.stderr
    assert deploy.git.remote_refs("shop") == {}  # feature did not move either

    deploy.git.commit({"Procfile": WEB_APP["Procfile"]})
    push = deploy.git.git("push", "--atomic", deploy.git.remote("shop"), "main", "feature", check=False)
    assert push.returncode == 0, push.stderr
    assert {"refs/heads/main", "refs/heads/feature"} <= set(deploy.git.remote_refs("shop"))
    assert deploy.get() == (200, "version one\n")


def test_custom_domains_refuse_ip_addresses_and_can_wait_for_an_admin(tmp_path: Path, local_storage,
                                                                       ssh_keys: dict[str, Path]) -> None:
    for deploy in make_deploy(tmp_path, local_storage, ssh_keys, TERESA_REQUIRE_DOMAIN_VERIFICATION="true"):
        deploy.git.commit(WEB_APP)
        assert deploy.git.push("shop").returncode == 0
        for literal in ("10.0.0.1", "127.1", "0x7f.1", "[::1]"):
            status, _, err = deploy.command(f"domains:add shop {literal}")
            assert status == 1 and err.startswith(f"error: '{literal}' is an IP address;"), err

        status, out, _ = deploy.command("domains:add shop www.bank.test")  # anybody could name anything
        assert status == 0 and "routes once an admin approves it with: domains:verify shop www.bank.test" in out
        assert deploy.get(host="www.bank.test")[0] == 404
        assert "waiting for an admin's approval" in deploy.command("domains shop")[1]
        assert "only admins may approve domains" in deploy.command("domains:verify shop www.bank.test")[2]

        assert deploy.server.local("domains:verify", "shop", "www.bank.test").status == 0
        assert deploy.get(host="www.bank.test") == (200, "version one\n")


def test_a_buildpack_url_token_is_never_on_a_command_line(deploy: Deploy) -> None:
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    secret = "s3cret-token-4711"
    seen: dict[str, object] = {"cmdlines": [], "auth": []}

    def command_lines_with_secret() -> list[str]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                line = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
            except OSError:
                continue
            if secret.encode() in line:
                found.append(line.replace(b"\0", b" ").decode(errors="replace"))
        return found

    class GitHost(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen["cmdlines"] += command_lines_with_secret()  # type: ignore[operator]  # git is running now
            auth = self.headers.get("Authorization")
            if auth is None:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="buildpacks"')
                self.end_headers()
                return
            seen["auth"].append(base64.b64decode(auth.split()[1]).decode())  # type: ignore[union-attr]
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    host = ThreadingHTTPServer(("127.0.0.1", 0), GitHost)
    threading.Thread(target=host.serve_forever, daemon=True).start()
    try:
        url = f"http://builder:{secret}@127.0.0.1:{host.server_address[1]}/buildpack.git"
        assert deploy.command(f"config:set shop BUILDPACK_URL={url}")[0] == 0
        deploy.git.commit(WEB_APP)
        push = deploy.git.push("shop")
    finally:
        host.shutdown()
    assert push.returncode != 0 and "Could not fetch the buildpack" in push.stderr
    assert seen["auth"] == [f"builder:{secret}"]  # git had the token, from its credential helper
    assert seen["cmdlines"] == []  # but no process showed it in `ps`
    assert secret not in push.stderr


def test_unwritable_storage_gives_one_sentence_and_no_server_path(deploy: Deploy) -> None:
    import shutil

    storage = deploy.server.settings.storage.root
    shutil.rmtree(storage)
    storage.write_text("not a directory any more")  # as root, permissions would not stop a write
    deploy.git.commit(WEB_APP)
    push = deploy.git.push("shop")
    assert push.returncode != 0
    assert "remote:  !     The server cannot store your push right now; nothing was changed." in push.stderr
    assert "! [remote rejected] main -> main (server cannot store push)" in push.stderr
    assert str(deploy.server.settings.data_dir) not in push.stderr and "Errno" not in push.stderr
