"""The SSH front door, driven by the real OpenSSH client."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from core.commands import Actor
from keys.ratelimit import LoginLimiter
from tests.fixtures.teresa import SSHClient, TeresaServer

PASSWORD = "correct-horse-battery"


def add_user(teresa: TeresaServer, email: str, *, admin: bool = False, password: str | None = PASSWORD,
             key: Path | None = None, team: str | None = None) -> None:
    flags = ["--admin"] if admin else []
    if password is None:
        flags.append("--no-password")
    result = teresa.local("users:create", email, *flags, stdin=(password or "").encode() + b"\n")
    assert result.status == 0, result.err
    if key is not None:
        result = teresa.local("keys:add", "--user", email, "laptop", stdin=key.with_suffix(".pub").read_bytes())
        assert result.status == 0, result.err
    if team is not None:
        teresa.local("teams:create", team)
        assert teresa.local("teams:add-user", team, email).status == 0


def test_unknown_key_is_refused(teresa: TeresaServer, ssh: SSHClient, ssh_keys: dict[str, Path]) -> None:
    result = ssh.run("help", key=ssh_keys["alice"])
    assert result.returncode == 255
    assert b"Permission denied" in result.stderr


def test_key_registered_with_local_cli_opens_the_door(teresa: TeresaServer, ssh: SSHClient,
                                                      ssh_keys: dict[str, Path]) -> None:
    created = teresa.cli("users:create", "alice@example.com", "--no-password")
    assert created.returncode == 0, created.stderr
    added = teresa.cli("keys:add", "--user", "alice@example.com", "laptop",
                       stdin=ssh_keys["alice"].with_suffix(".pub").read_bytes())
    assert added.returncode == 0, added.stderr
    assert b"SHA256:" in added.stdout

    result = ssh.run("help", key=ssh_keys["alice"])
    assert result.returncode == 0, result.stderr
    assert b"apps:create" in result.stdout
    assert b"serve" not in result.stdout  # server-host-only commands are not offered over SSH
    whoami = ssh.run("whoami --json", key=ssh_keys["alice"])
    assert json.loads(whoami.stdout)["email"] == "alice@example.com"


def test_app_of_another_team_is_permission_denied(teresa: TeresaServer, ssh: SSHClient,
                                                  ssh_keys: dict[str, Path]) -> None:
    add_user(teresa, "alice@example.com", key=ssh_keys["alice"], team="red")
    add_user(teresa, "bob@example.com", key=ssh_keys["bob"], team="blue")
    assert ssh.run("apps:create shop", key=ssh_keys["alice"]).returncode == 0

    result = ssh.run("apps:info shop", key=ssh_keys["bob"])
    assert result.returncode == 1
    assert result.stderr.decode().startswith("error: permission denied for app 'shop'")
    assert result.stderr.count(b"\n") == 1
    destroy = ssh.run("apps:destroy shop --confirm shop", key=ssh_keys["bob"])
    assert b"permission denied" in destroy.stderr
    assert ssh.run("apps:list --json", key=ssh_keys["bob"]).stdout.strip() == b"[]"
    assert ssh.run("apps:info shop", key=ssh_keys["alice"]).returncode == 0


def test_unsigned_probe_of_another_key_then_own_password_is_not_that_user(
        teresa: TeresaServer, ssh: SSHClient, ssh_keys: dict[str, Path], tmp_path: Path) -> None:
    add_user(teresa, "admin@example.com", admin=True, key=ssh_keys["admin"])
    add_user(teresa, "mallory@example.com")
    # Mallory has the admin's public key but not its private key: OpenSSH offers
    # it unsigned, gets "key OK", cannot sign, and falls back to the password.
    stolen = tmp_path / "stolen"
    stolen.mkdir()
    shutil.copy(ssh_keys["admin"].with_suffix(".pub"), stolen / "admin.pub")

    result = ssh.run("whoami --json", key=stolen / "admin.pub", user="mallory@example.com", password=PASSWORD)
    assert result.returncode == 0, result.stderr
    me = json.loads(result.stdout)
    assert me["email"] == "mallory@example.com" and me["admin"] is False

    denied = ssh.run("users:list", key=stolen / "admin.pub", user="mallory@example.com", password=PASSWORD)
    assert b"only admins" in denied.stderr

    wrong = ssh.run("whoami", key=stolen / "admin.pub", user="admin@example.com", password="not-the-password")
    assert wrong.returncode == 255


def test_password_login_lets_a_keyless_user_add_a_key(teresa: TeresaServer, ssh: SSHClient,
                                                      ssh_keys: dict[str, Path]) -> None:
    add_user(teresa, "carol@example.com")
    assert ssh.run("whoami", key=ssh_keys["carol"]).returncode == 255

    added = ssh.run("keys:add laptop", user="carol@example.com", password=PASSWORD,
                    stdin=ssh_keys["carol"].with_suffix(".pub").read_bytes())
    assert added.returncode == 0, added.stderr

    result = ssh.run("keys:list --json", key=ssh_keys["carol"])
    assert [k["name"] for k in json.loads(result.stdout)] == ["laptop"]


def test_failed_passwords_are_rate_limited(teresa: TeresaServer, ssh: SSHClient) -> None:
    teresa.server.ssh.limiter = LoginLimiter(per_address=100, per_user=2)
    add_user(teresa, "carol@example.com")
    for _ in range(2):
        assert ssh.run("whoami", user="carol@example.com", password="wrong-password").returncode == 255
    locked = ssh.run("whoami", user="carol@example.com", password=PASSWORD)
    assert locked.returncode == 255  # even the right password, until the window passes


def test_interactive_login_prints_usage_and_grants_nothing(teresa: TeresaServer, ssh: SSHClient,
                                                           ssh_keys: dict[str, Path]) -> None:
    add_user(teresa, "alice@example.com", key=ssh_keys["alice"])
    login = ssh.run("", key=ssh_keys["alice"])
    assert login.returncode == 0
    assert b"gives no shell" in login.stdout

    argv = ["ssh", *ssh.options(ssh_keys["alice"]), "-s", "git@127.0.0.1", "sftp"]
    sftp = subprocess.run(argv, capture_output=True, timeout=30)
    assert sftp.returncode != 0 and b"subsystem request failed" in sftp.stderr

    argv = ["ssh", *ssh.options(ssh_keys["alice"]), "-W", f"127.0.0.1:{teresa.ssh_port}", "git@127.0.0.1"]
    forward = subprocess.run(argv, capture_output=True, timeout=30, input=b"")
    assert forward.returncode != 0

    # A terminal is allowed (for `run -- bash`), but it still gives no shell: the usage, then the session ends.
    argv = ["ssh", *ssh.options(ssh_keys["alice"]), "-tt", "git@127.0.0.1"]
    pty = subprocess.run(argv, capture_output=True, timeout=30)
    assert pty.returncode == 0 and b"gives no shell.\r\n" in pty.stdout
    pty = subprocess.run([*argv, "whoami"], capture_output=True, timeout=30)
    assert (pty.returncode, pty.stdout) == (0, b"alice@example.com\r\n")


def test_hostile_input_is_one_line_and_changes_nothing(teresa: TeresaServer, ssh: SSHClient,
                                                       ssh_keys: dict[str, Path]) -> None:
    add_user(teresa, "admin@example.com", admin=True, key=ssh_keys["admin"], team="ops")
    key = ssh_keys["admin"]

    def state() -> tuple[bytes, ...]:
        return tuple(ssh.run(c, key=key).stdout for c in ("apps:list --json", "teams:list --json",
                                                          "users:list --json", "keys:list --json"))

    before = state()
    hostile = [
        "apps:create ../etc", "apps:create 'my app'", "apps:create MyApp", "apps:create 'a;rm -rf /'",
        "apps:create '$(reboot)'", "apps:create `id`", "teams:create 'x|y'", "apps:create " + "a" * 10240,
        "keys:add " + "k" * 10240, "users:create 'not an email'", "nosuch:command", "apps:list --frobnicate",
        "apps:create", "apps:create 'unterminated", "keys:remove ../../root",
    ]
    for line in hostile:
        result = ssh.run(line, key=key, stdin=b"")
        assert result.returncode == 1, line
        assert result.stdout == b"", line
        assert result.stderr.startswith(b"error: ") and result.stderr.count(b"\n") == 1, (line, result.stderr)
        assert b"Traceback" not in result.stderr

    binary = ssh.run("keys:add evil", key=key, stdin=bytes(range(256)) * 8)
    assert binary.returncode == 1 and b"binary" in binary.stderr
    private = ssh.run("keys:add evil", key=key, stdin=key.read_bytes())
    assert b"private key" in private.stderr
    assert state() == before


def test_commands_as_user_match_local_permissions(teresa: TeresaServer) -> None:
    add_user(teresa, "alice@example.com", team="red")
    alice = Actor(email="alice@example.com", user_id=1)
    assert "only admins" in teresa.local("teams:create", "blue", actor=alice).err
    assert teresa.local("apps:create", "shop", actor=alice).status == 0
    assert teresa.local("apps:create", "shop", actor=alice).err.startswith("error: app 'shop' already exists")


def test_host_key_survives_a_restart(tmp_path: Path, ssh_keys: dict[str, Path]) -> None:
    from tests.fixtures.teresa import base_env

    env = base_env(tmp_path / "data")
    first = TeresaServer(env)
    add_user(first, "alice@example.com", key=ssh_keys["alice"])
    client = SSHClient(first, tmp_path)
    assert client.run("whoami", key=ssh_keys["alice"]).returncode == 0
    first.stop()

    second = TeresaServer(env)
    try:
        client.server = second
        strict = client.run("whoami", key=ssh_keys["alice"])  # known_hosts now pins the key
        assert strict.returncode == 0, strict.stderr
    finally:
        second.stop()
