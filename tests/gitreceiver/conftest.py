"""A server with an admin, a team and an app, ready to push to, on local or S3 storage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from core.config import StorageSettings
from tests.fixtures.teresa import GitClient, SSHClient, TeresaServer, base_env, http_get

BUILDPACKS = Path(__file__).resolve().parents[1] / "builder" / "buildpacks"
WEB_APP = {"Procfile": "web: python3 -m http.server --bind 127.0.0.1 \"$PORT\"\n", "index.html": "version one\n"}


@dataclass
class Deploy:
    server: TeresaServer
    ssh: SSHClient
    git: GitClient
    key: Path
    app: str = "shop"

    def command(self, line: str, stdin: bytes = b"") -> tuple[int, str, str]:
        result = self.ssh.run(line, key=self.key, stdin=stdin)
        return result.returncode, result.stdout.decode(), result.stderr.decode()

    def get(self, path: str = "/", host: str | None = None) -> tuple[int, str]:
        port = self.server.services.runtime.router.port
        return http_get(port, host or f"{self.app}.localhost", path)


def make_deploy(tmp_path: Path, storage: StorageSettings, ssh_keys: dict[str, Path], **env: str) -> Iterator[Deploy]:
    server = TeresaServer(base_env(tmp_path / "data", **storage.to_env(), **env))
    try:
        assert server.local("users:create", "dev@example.com", "--no-password").status == 0
        server.local("keys:add", "--user", "dev@example.com", "laptop",
                     stdin=ssh_keys["alice"].with_suffix(".pub").read_bytes())
        server.local("teams:create", "web")
        server.local("teams:add-user", "web", "dev@example.com")
        assert server.local("apps:create", "shop", "--team", "web").status == 0
        ssh = SSHClient(server, tmp_path)
        yield Deploy(server, ssh, GitClient(ssh, ssh_keys["alice"], tmp_path / "work"), ssh_keys["alice"])
    finally:
        server.stop()


@pytest.fixture
def deploy(tmp_path: Path, local_storage: StorageSettings, ssh_keys: dict[str, Path]) -> Iterator[Deploy]:
    yield from make_deploy(tmp_path, local_storage, ssh_keys)


@pytest.fixture
def deploy_any_storage(tmp_path: Path, any_storage: StorageSettings, ssh_keys: dict[str, Path]) -> Iterator[Deploy]:
    yield from make_deploy(tmp_path, any_storage, ssh_keys)
