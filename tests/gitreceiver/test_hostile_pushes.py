"""Pushes made to hurt the server (issue 12), against `teresa serve` in its own process.

Each attack is pushed with the real git and ssh clients; the server's memory is read from
/proc, and another app keeps answering through the router while the attack is refused.
"""

from __future__ import annotations

import hashlib
import threading
import time
import zlib
from pathlib import Path
from typing import Iterator

import pytest

from tests.fixtures.serve import ServeProcess
from tests.fixtures.teresa import GitClient, SSHClient, http_get
from tests.gitreceiver.conftest import WEB_APP

MAX_GROWTH_KB = 100 * 1024
# Nested aliases inside a field Teresa reads: 10**8 strings once expanded, from under 500 bytes.
# Printing the value in an error message (as Teresa did) built a string of half a gigabyte, on the
# event loop.
ALIAS_BOMB = "rollingUpdate:\n  maxSurge:\n" + "".join(
    [f"  - &a0 [{','.join(['x'] * 10)}]\n"]
    + [f"  - &a{n} [{','.join([f'*a{n - 1}'] * 10)}]\n" for n in range(1, 8)]
)


class Bystander(threading.Thread):
    """Another app's requests, made all along; each slow or failed one is kept."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port, self.stop, self.samples, self.bad = port, threading.Event(), 0, []

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                status, body = http_get(self.port, "bystander.localhost", timeout=30)
            except OSError as exc:
                status, body = 0, str(exc)
            took = time.monotonic() - started
            self.samples += 1
            if status != 200 or took > 5:  # generous: the machine is shared; a blocked loop takes far longer
                self.bad.append((status, round(took, 2)))
            self.stop.wait(0.2)

    def __enter__(self) -> "Bystander":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(60)


class Attack:
    def __init__(self, server: ServeProcess, git: GitClient):
        self.server, self.git = server, git

    def push(self) -> tuple[str, int]:
        """Push main to shop; returns git's stderr and the server's memory growth in kB."""
        before = self.server.status("VmRSS")
        self.server.reset_peak()
        with Bystander(self.server.router_port) as bystander:
            push = self.git.push("shop")
        assert bystander.samples > 0 and bystander.bad == [], bystander.bad  # the other app never waited
        assert push.returncode != 0
        return push.stderr, self.server.status("VmHWM") - before


@pytest.fixture
def attack(tmp_path: Path, ssh_keys: dict[str, Path]) -> Iterator[Attack]:
    server = ServeProcess(tmp_path / "data")
    try:
        for argv, stdin in [
            (("users:create", "dev@example.com", "--no-password"), b""),
            (("keys:add", "--user", "dev@example.com", "laptop"), ssh_keys["alice"].with_suffix(".pub").read_bytes()),
            (("teams:create", "web"), b""), (("teams:add-user", "web", "dev@example.com"), b""),
            (("apps:create", "shop", "--team", "web"), b""), (("apps:create", "bystander", "--team", "web"), b""),
        ]:
            done = server.cli(*argv, stdin=stdin)
            assert done.returncode == 0, done.stderr
        git = GitClient(SSHClient(server, tmp_path), ssh_keys["alice"], tmp_path / "work")  # type: ignore[arg-type]
        git.commit(WEB_APP)
        first = git.push("bystander")
        assert first.returncode == 0, first.stderr
        assert http_get(server.router_port, "bystander.localhost") == (200, "version one\n")
        yield Attack(server, git)
    finally:
        server.stop()


@pytest.mark.timeout(600)
def test_a_yaml_alias_bomb_is_refused_without_memory_growth(attack: Attack) -> None:
    attack.git.commit({"teresa.yaml": ALIAS_BOMB})
    assert len(ALIAS_BOMB) < 500  # a few hundred bytes
    stderr, growth = attack.push()
    assert "teresa.yaml expands to more than 10000 values (through its aliases)" in stderr
    assert "! [remote rejected] main -> main (invalid teresa.yaml)" in stderr
    assert growth < MAX_GROWTH_KB, f"the server grew by {growth} kB"


def write_zero_blob(repo: Path, size: int) -> str:
    """A loose object of `size` zero bytes, written directly (git would take minutes to hash it)."""
    header = b"blob %d\0" % size
    digest, packer = hashlib.sha1(header), zlib.compressobj(9)
    compressed = [packer.compress(header)]
    chunk = bytes(16 << 20)
    for _ in range(size // len(chunk)):
        digest.update(chunk)
        compressed.append(packer.compress(chunk))
    compressed.append(packer.flush())
    sha = digest.hexdigest()
    path = repo / ".git" / "objects" / sha[:2] / sha[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(compressed))
    return sha


@pytest.mark.timeout(600)
def test_a_small_push_of_a_huge_zero_file_is_refused_without_memory_growth(attack: Attack) -> None:
    sha = write_zero_blob(attack.git.workdir, 1 << 30)
    attack.git.git("update-index", "--add", "--cacheinfo", f"100644,{sha},zeros.bin")
    attack.git.git("commit", "-q", "-m", "a gigabyte of zeros")
    stderr, growth = attack.push()
    assert "This push holds a file of 1024 MiB, over the 100 MiB limit (TERESA_MAX_FILE_BYTES)" in stderr
    assert "! [remote rejected] main -> main (file too large)" in stderr
    assert growth < MAX_GROWTH_KB, f"the server grew by {growth} kB"
    assert "refs/heads/main" not in attack.git.remote_refs("shop")
