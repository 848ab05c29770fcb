"""Per-app users on the local runtime (Teresa as root), through the real ssh and git clients.

Findings of the security review (issue 12) kept as tests: a build of one team
scanning /proc/*/environ and the filesystem finds no storage setting and nothing
of another app; another team's `run` cannot read the other app's current.json,
the database or the SSH host key (absent from its sandbox). As root, they run
wherever the interpreter lives, /root included.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from tests.fixtures.teresa import Deploy, GitClient
from tests.fixtures.tenancy import SKIP_REASON, isolated
from tests.gitreceiver.conftest import WEB_APP

needs_app_users = pytest.mark.skipif(not isolated(), reason=SKIP_REASON)
SNOOP = Path(__file__).parent / "snoop"
CANARY = "beta-canary-7f3a9c"
REPO = Path(__file__).resolve().parents[2]


def deploy_beta(deploy: Deploy, bob_key: Path, tmp_path: Path) -> None:
    """Another team's app, running, with a secret in its config."""
    server = deploy.server
    assert server.local("users:create", "bob@example.com", "--no-password").status == 0
    server.local("keys:add", "--user", "bob@example.com", "laptop", stdin=bob_key.with_suffix(".pub").read_bytes())
    server.local("teams:create", "other")
    server.local("teams:add-user", "other", "bob@example.com")
    assert server.local("apps:create", "beta", "--team", "other").status == 0
    result = deploy.ssh.run(f"config:set beta BETA_TOKEN={CANARY}", key=bob_key)
    assert result.returncode == 0, result.stderr
    bob = GitClient(deploy.ssh, bob_key, tmp_path / "beta")
    bob.commit(WEB_APP)
    push = bob.push("beta")
    assert push.returncode == 0, push.stderr


def private_paths(deploy: Deploy) -> list[Path]:
    settings = deploy.server.settings
    data = settings.data_dir
    assert settings.apps_dir is not None
    return [data, data / "teresa.sqlite", data / "ssh_host_ed25519_key", data / "apps" / "beta" / "current.json",
            data / "apps" / "beta" / "logs" / "app.log", data / "repos" / "beta.git", settings.storage.root,
            settings.apps_dir / "beta" / "releases" / "v1", settings.apps_dir / "beta" / "tmp"]


@needs_app_users
def test_a_hostile_build_finds_no_storage_setting_and_nothing_of_another_app(deploy: Deploy,
                                                                              ssh_keys: dict[str, Path],
                                                                              tmp_path: Path) -> None:
    deploy_beta(deploy, ssh_keys["bob"], tmp_path)
    paths = private_paths(deploy)
    assert all(p.exists() for p in paths), [p for p in paths if not p.exists()]
    status, _, err = deploy.command(f"config:set shop BUILDPACK_URL={SNOOP}")
    assert status == 0, err
    deploy.git.commit({**WEB_APP, "snoop.txt": "\n".join([CANARY, *map(str, paths)]) + "\n"})
    push = deploy.git.push("shop")
    assert "snooping done" in push.stderr, push.stderr
    scanned = int(push.stderr.split("-----> scanned ")[1].split()[0])
    assert scanned >= 1  # its own processes at least: the scan ran
    assert "SNOOP:" not in push.stderr, push.stderr
    assert push.returncode == 0, push.stderr


@needs_app_users
def test_another_teams_run_cannot_read_current_json_the_database_or_the_host_key(deploy: Deploy,
                                                                                 ssh_keys: dict[str, Path],
                                                                                 tmp_path: Path) -> None:
    deploy_beta(deploy, ssh_keys["bob"], tmp_path)
    deploy.git.commit(WEB_APP)
    assert deploy.git.push("shop").returncode == 0
    data = deploy.server.settings.data_dir
    for target in (data / "apps" / "beta" / "current.json", data / "teresa.sqlite", data / "ssh_host_ed25519_key"):
        result = deploy.ssh.run(f"run shop -- cat {target}", key=deploy.key)
        assert result.returncode != 0, target
        said = result.stdout + result.stderr
        assert b"No such file or directory" in said or b"Permission denied" in said, (target, result)
        assert CANARY.encode() not in result.stdout
    beta_pids = deploy.ssh.run("run shop -- sh -c 'cat /proc/[0-9]*/environ 2>/dev/null | tr \"\\0\" \"\\n\"'",
                               key=deploy.key)
    assert CANARY.encode() not in beta_pids.stdout


def test_private_files_are_0700_and_0600_whatever_the_umask(deploy: Deploy) -> None:
    deploy.git.commit(WEB_APP)
    old = os.umask(0)
    try:
        assert deploy.git.push("shop").returncode == 0
    finally:
        os.umask(old)
    data = deploy.server.settings.data_dir
    for path, mode in ((data, 0o700), (data / "teresa.sqlite", 0o600), (data / "repos", 0o700),
                       (data / "repos" / "shop.git", 0o700), (data / "apps" / "shop" / "logs", 0o700),
                       (data / "apps" / "shop" / "logs" / "app.log", 0o600), (data / "ssh_host_ed25519_key", 0o600)):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_the_start_up_line_says_when_the_local_runtime_is_single_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    from controller.runtime.local.capabilities import local_capabilities
    from core.config import Settings
    from server.serve import tenancy

    off = Settings.from_env({"TERESA_APP_ISOLATION": "off"})
    assert tenancy(local_capabilities(off)).startswith("the local runtime is single-tenant")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert tenancy(local_capabilities(Settings.from_env({}))).startswith("the local runtime is single-tenant")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert tenancy(local_capabilities(Settings.from_env({}))) == "one user per app"


@needs_app_users
def test_one_offs_run_as_the_apps_user_in_a_copy_it_owns_with_or_without_a_terminal(deploy: Deploy) -> None:
    deploy.git.commit(WEB_APP)
    assert deploy.git.push("shop").returncode == 0
    settings = deploy.server.settings
    uid = (settings.data_dir / "apps" / "shop" / "uid").read_text().strip()
    result = deploy.ssh.run("run shop -- sh -c 'id -u; id -g; stat -c %u .; echo x > mine.txt && echo wrote'",
                            key=deploy.key)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == [uid, uid, uid, "wrote"]
    shell = pexpect.spawn("ssh", [*deploy.ssh.options(deploy.key), "-t", "git@127.0.0.1", "run shop -- sh"],
                          env=deploy.ssh.env(None), timeout=60, encoding="utf-8")
    try:
        shell.expect(r"\$ $")  # not root's "# "
        shell.sendline("echo uid=$(id -u); tty")
        shell.expect(rf"uid={uid}\r\n")
        shell.expect(r"/dev/pts/\d+\r\n")
        shell.sendline("exit 4")
        shell.expect(pexpect.EOF)
    finally:
        shell.close()
    assert shell.exitstatus == 4
    assert settings.apps_dir is not None
    assert not list((settings.apps_dir / "shop" / "oneoffs").iterdir())  # each copy is removed afterwards
