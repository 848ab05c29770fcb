"""Identity on open connections (issue 12): a connection acts only as who it still is.

Each test reproduces a review finding with the real OpenSSH client against the real server.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import select

from core.models import User
from keys import passwords
from keys.ratelimit import LoginLimiter
from tests.fixtures.teresa import SSHClient, TeresaServer, base_env, http_get, wait_for
from tests.keys.test_ssh_access import PASSWORD, add_user


class Multiplexed:
    """One OpenSSH connection kept open (ControlMaster); each `run` is a new session on it."""

    def __init__(self, ssh: SSHClient, key: Path, socket: Path):
        self.ssh, self.socket = ssh, socket
        self.base = ["ssh", *ssh.options(key), "-S", str(socket)]
        subprocess.run([*self.base, "-M", "-f", "-N", "-o", "ControlPersist=yes", "git@127.0.0.1"], check=True,
                       timeout=30, env=ssh.env(None))

    def run(self, command: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*self.base, "-o", "ControlMaster=no", "git@127.0.0.1", command],
                              capture_output=True, timeout=30, env=self.ssh.env(None))

    def alive(self) -> bool:
        return subprocess.run([*self.base, "-O", "check", "git@127.0.0.1"], capture_output=True,
                              timeout=30).returncode == 0

    def close(self) -> None:
        subprocess.run([*self.base, "-O", "exit", "git@127.0.0.1"], capture_output=True, timeout=30)


@pytest.fixture
def mux(ssh: SSHClient, ssh_keys: dict[str, Path], tmp_path: Path) -> Iterator[Multiplexed]:
    connection = Multiplexed(ssh, ssh_keys["alice"], tmp_path / "mux")
    yield connection
    connection.close()


@pytest.fixture
def alice(teresa: TeresaServer, ssh_keys: dict[str, Path]) -> None:
    add_user(teresa, "admin@example.com", admin=True, key=ssh_keys["admin"])
    add_user(teresa, "alice@example.com", key=ssh_keys["alice"], team="red")


def test_a_deleted_users_open_connection_is_refused_and_never_becomes_the_next_user(
        teresa: TeresaServer, alice: None, mux: Multiplexed) -> None:
    assert b"alice@example.com" in mux.run("whoami").stdout
    assert teresa.local("users:delete", "alice@example.com").status == 0
    # Before: SQLite gave the deleted (highest) id to the next user, and the open connection was them.
    assert teresa.local("users:create", "eve@example.com", "--admin", "--no-password").status == 0

    after = mux.run("whoami --json")
    assert after.returncode != 0 and b"eve@example.com" not in after.stdout
    assert after.stderr.startswith(b"error: the account alice@example.com was deleted;"), after.stderr
    assert after.stderr.count(b"\n") == 1
    wait_for(lambda: not mux.alive())  # and the connection itself is closed

    ids = teresa.call(teresa.services.db.run(lambda s: list(s.scalars(select(User.id).order_by(User.id)))))
    assert ids == [1, 3]  # the id 2 of the deleted user is not given out again


def test_a_removed_key_and_a_revoked_admin_flag_apply_to_open_connections(
        teresa: TeresaServer, ssh: SSHClient, ssh_keys: dict[str, Path], tmp_path: Path) -> None:
    add_user(teresa, "root@example.com", admin=True, key=ssh_keys["admin"])
    add_user(teresa, "alice@example.com", admin=True, key=ssh_keys["alice"])
    connection = Multiplexed(ssh, ssh_keys["alice"], tmp_path / "mux")
    try:
        assert connection.run("users:list").returncode == 0

        def revoke(session) -> None:  # type: ignore[no-untyped-def]
            session.scalar(select(User).where(User.email == "alice@example.com")).is_admin = False

        teresa.call(teresa.services.db.run(revoke))
        denied = connection.run("users:list")
        assert denied.returncode == 1 and b"only admins may list users" in denied.stderr

        assert teresa.local("keys:remove", "laptop", "--user", "alice@example.com").status == 0
        refused = connection.run("whoami")
        assert refused.returncode == 1
        assert refused.stderr.startswith(b"error: the SSH key this connection logged in with was removed;")
    finally:
        connection.close()


def test_ssh_connections_have_a_maximum_lifetime(tmp_path: Path, ssh_keys: dict[str, Path]) -> None:
    server = TeresaServer(base_env(tmp_path / "data", TERESA_SSH_SESSION_MAX_SECONDS="2"))
    try:
        add_user(server, "alice@example.com", key=ssh_keys["alice"])
        connection = Multiplexed(SSHClient(server, tmp_path), ssh_keys["alice"], tmp_path / "mux")
        try:
            assert connection.run("whoami").returncode == 0
            wait_for(lambda: not connection.alive(), timeout=60)
        finally:
            connection.close()
    finally:
        server.stop()


def test_rsa_keys_under_2048_bits_are_refused_with_a_sentence(teresa: TeresaServer, ssh: SSHClient,
                                                              ssh_keys: dict[str, Path], tmp_path: Path) -> None:
    add_user(teresa, "alice@example.com", key=ssh_keys["alice"])
    weak = tmp_path / "weak"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", str(weak)], check=True)
    result = ssh.run("keys:add old", key=ssh_keys["alice"], stdin=weak.with_suffix(".pub").read_bytes())
    assert result.returncode == 1
    assert result.stderr == (b"error: this RSA key has 1024 bits, fewer than the 2048 Teresa accepts; "
                             b"generate a new key with: ssh-keygen -t ed25519\n")
    strong = tmp_path / "strong"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N", "", "-f", str(strong)], check=True)
    assert ssh.run("keys:add new", key=ssh_keys["alice"], stdin=strong.with_suffix(".pub").read_bytes()).returncode == 0


def test_password_failures_do_not_lock_out_public_keys_from_the_same_address(
        teresa: TeresaServer, ssh: SSHClient, ssh_keys: dict[str, Path]) -> None:
    add_user(teresa, "alice@example.com", key=ssh_keys["alice"])
    add_user(teresa, "bob@example.com")
    teresa.server.ssh.limiter = LoginLimiter(per_address=3, per_user=100)
    for _ in range(3):
        assert ssh.run("whoami", user="bob@example.com", password="wrong-password").returncode == 255
    blocked = ssh.run("whoami", user="bob@example.com", password=PASSWORD)
    assert blocked.returncode == 255  # passwords from this address are blocked for a while ...
    keyed = ssh.run("whoami", key=ssh_keys["alice"])
    assert keyed.returncode == 0, keyed.stderr  # ... keys are not


def _password_attempt(ssh: SSHClient, source: str, user: str) -> subprocess.Popen[bytes]:
    argv = ["ssh", *ssh.options(password="wrong-password"), "-b", source, f"{user}@127.0.0.1", "whoami"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ssh.env("wrong-password"))


def test_a_password_flood_is_bounded_in_flight_and_cannot_stall_the_database(
        teresa: TeresaServer, ssh: SSHClient, ssh_keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    add_user(teresa, "alice@example.com", key=ssh_keys["alice"])
    gate, entered, real = threading.Event(), [], passwords.check_password

    def slow_bcrypt(password: str, hashed: str | None) -> bool:  # bcrypt, as slow as an attacker wants
        entered.append(1)
        gate.wait(120)
        return real(password, hashed)

    monkeypatch.setattr(passwords, "check_password", slow_bcrypt)
    flood = [_password_attempt(ssh, f"127.0.0.{n}", f"user{n}@example.com") for n in range(2, 10)]
    same_address = [_password_attempt(ssh, "127.0.1.1", f"other{n}@example.com") for n in range(3)]
    try:
        wait_for(lambda: len(entered) >= 2)
        # The third concurrent attempt from one address is refused at once, not queued.
        wait_for(lambda: sum(p.poll() is not None for p in same_address) >= 1, timeout=60)
        # bcrypt has a pool of its own: database work (a key login) and /readyz go on meanwhile.
        assert ssh.run("whoami", key=ssh_keys["alice"], timeout=60).returncode == 0
        assert http_get(teresa.server.http_port, "127.0.0.1", "/readyz", timeout=60)[0] == 200
        assert len(entered) <= 2
    finally:
        gate.set()
        for attempt in flood + same_address:
            attempt.wait(60)
    assert all(p.returncode == 255 for p in flood + same_address)
