"""Helpers for the builder tests: pack a sample app, run the real slugbuilder, start a slug and ask it over HTTP."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import secrets
import subprocess
import sys
import sysconfig
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from builder import slugrunner
from builder.job import BuildRequest
from core.config import StorageSettings
from core.storage import storage_for
from core.ports import free_port

HERE = Path(__file__).parent
APPS = HERE / "apps"
TEST_BUILDPACKS = HERE / "buildpacks"


def script(name: str) -> list[str]:
    """The installed console script, or the module when the scripts are not on disk."""
    path = Path(sysconfig.get_path("scripts")) / name
    module = {"teresa-slugbuilder": "builder.slugbuilder", "teresa-slugrunner": "builder.slugrunner"}[name]
    return [str(path)] if path.exists() else [sys.executable, "-m", module]


def app_files(name: str) -> dict[str, bytes]:
    """The files of a sample app under tests/builder/apps, by relative path."""
    root = APPS / name
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def tarball(files: dict[str, bytes | str] | Path) -> bytes:
    """A .tar.gz of a sample app directory, or of {path: content}."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        if isinstance(files, Path):
            for entry in sorted(files.iterdir()):
                tar.add(entry, arcname=entry.name)
        else:
            for name, content in files.items():
                data = content.encode() if isinstance(content, str) else content
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class Build:
    status: int
    output: str
    slug_key: str
    cache_key: str
    storage: StorageSettings

    @property
    def lines(self) -> list[str]:
        return self.output.splitlines()


class Builder:
    """Runs teresa-slugbuilder as a subprocess against one storage, one app."""

    def __init__(self, storage: StorageSettings, app: str | None = None) -> None:
        self.storage = storage
        self.app = app or f"app-{secrets.token_hex(4)}"

    def upload(self, source: bytes) -> tuple[str, str, str]:
        build_id = secrets.token_hex(4)
        prefix = f"apps/{self.app}/builds/{build_id}"
        storage_for(self.storage).put_stream(f"{prefix}/source.tgz", io.BytesIO(source))
        return f"{prefix}/source.tgz", f"{prefix}/slug.tgz", f"apps/{self.app}/cache/cache.tgz"

    def env(self, keys: tuple[str, str, str], config: dict[str, str] | None, **extra: str) -> dict[str, str]:
        source_key, slug_key, cache_key = keys
        request = BuildRequest(self.app, slug_key.split("/")[-2], source_key, slug_key, cache_key, config or {})
        env = {k: v for k, v in os.environ.items() if not k.startswith("TERESA")}
        storage = storage_for(self.storage)
        env.update(request.to_env(request.grants(storage, cache_exists=storage.exists(cache_key))), **extra)
        return env

    def build(self, source: bytes | Path | dict, config: dict[str, str] | None = None, timeout: float = 90, **extra: str) -> Build:
        keys = self.upload(source if isinstance(source, bytes) else tarball(source))
        proc = subprocess.run(
            script("teresa-slugbuilder"), env=self.env(keys, config, **extra),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
        )  # fmt: skip
        return Build(proc.returncode, proc.stdout.decode(errors="replace"), keys[1], keys[2], self.storage)

    def spawn(self, source: bytes, config: dict[str, str] | None = None, **extra: str) -> subprocess.Popen:
        """Start a build without waiting for it; its output is on .stdout."""
        keys = self.upload(source)
        return subprocess.Popen(script("teresa-slugbuilder"), env=self.env(keys, config, **extra),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


class RunningSlug:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    def get(self, path: str = "/", deadline: float = 30.0) -> str:
        """The body of GET `path`, polling until the app answers (or fails the test)."""
        end = time.monotonic() + deadline
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"The app exited with status {self.proc.returncode}:\n{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                    return response.read().decode()
            except urllib.error.HTTPError:
                raise
            except OSError:
                if time.monotonic() > end:
                    pytest.fail(f"The app did not answer on port {self.port}:\n{self.log.read_text()[-2000:]}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def run_slug(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """run_slug(build, type="web", env={}) starts `teresa-slugrunner start TYPE` on a free port."""
    started: list[RunningSlug] = []

    def start(build: Build, process_type: str = "web", env: dict[str, str] | None = None) -> RunningSlug:
        base = tmp_path_factory.mktemp("slug")
        port = free_port()
        run_env = {k: v for k, v in os.environ.items() if not k.startswith("TERESA")}
        grant = storage_for(build.storage).grant(build.slug_key, write=False, seconds=600)
        run_env.update(slugrunner.job_env(grant, str(base / "app")), PORT=str(port), **(env or {}))
        log = base / "app.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([*script("teresa-slugrunner"), "start", process_type], env=run_env,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        running = RunningSlug(proc, port, log)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def build_wheel(package_dir: Path, name: str, version: str, out: Path) -> Path:
    """A pure-Python wheel of `package_dir` (a zip with a dist-info, per the wheel spec), made offline."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = {
        f"{package_dir.name}/{p.relative_to(package_dir).as_posix()}": p.read_bytes()
        for p in sorted(package_dir.rglob("*.py"))
    }
    files[f"{dist}.dist-info/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{dist}.dist-info/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: teresa-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = [f"{path},sha256={_urlsafe_sha256(data)},{len(data)}" for path, data in files.items()]
    files[f"{dist}.dist-info/RECORD"] = ("\n".join([*record, f"{dist}.dist-info/RECORD,,"]) + "\n").encode()
    wheel = out / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def _urlsafe_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


@pytest.fixture(scope="session")
def go_builder(tmp_path_factory: pytest.TempPathFactory) -> Builder:
    """One app for every Go build of the session, so that later builds reuse the Go build cache of the
    first, as an app's pushes do: the standard library compiles once (the Go tests share an xdist group)."""
    return Builder(StorageSettings(type="local", root=tmp_path_factory.mktemp("go-storage")))


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding a wheel of the sample `teresa-test-greeting` package, built here, offline."""
    out = tmp_path_factory.mktemp("wheelhouse")
    build_wheel(APPS / "greeting_pkg" / "greeting", "teresa-test-greeting", "1.0", out)
    return out


@pytest.fixture(scope="session")
def offline_pip(wheelhouse: Path) -> dict[str, str]:
    """Config vars that make the Python buildpack's pip install from the local wheelhouse only."""
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse)}


def python_version() -> str:
    """The version of the python3 the buildpack will find first on PATH."""
    return subprocess.run(
        ["python3", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"], capture_output=True, text=True, check=True
    ).stdout.strip()
