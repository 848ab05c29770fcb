"""Shared pieces of the KubernetesRuntime tests: settings, a line sink, source tarballs, waiting on conditions."""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from builder.job import BuildRequest
from controller.spec import ReleaseSpec
from controller.teresa_yaml import parse
from core.config import Settings
from core.storage import storage_for
from tests.fixtures.kube import KubeAPI

APP = "shop"
BUILDPACKS = Path(__file__).parent.parent / "builder" / "buildpacks"
SLUGBUILDER_IMAGE = "registry.example.net/teresa/stack:test"
TERESA_YAML = """
healthCheck:
  readiness:
    path: /health
rollingUpdate:
  maxSurge: 1
  maxUnavailable: 0
"""


def runtime_settings(kube_api: KubeAPI, tmp_path: Path, **extra: str) -> Settings:
    return Settings.from_env({
        **kube_api.env(),
        "TERESA_DATA_DIR": str(tmp_path / "data"),
        "TERESAFILESTORAGE_TYPE": "local",
        "TERESAFILESTORAGE_LOCAL_ROOT": str(tmp_path / "storage"),
        "TERESA_SLUGBUILDER_IMAGE": SLUGBUILDER_IMAGE,
        "TERESA_ROLLOUT_TIMEOUT": "20",
        "TERESA_BUILD_TIMEOUT": "60",
        **extra,
    })


class Lines:
    """A LineSink that remembers what it got and lets a test await a line."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = asyncio.Event()

    async def __call__(self, line: str) -> None:
        self.lines.append(line)
        self._changed.set()

    async def wait_for(self, text: str, timeout: float = 20) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not any(text in line for line in self.lines):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no line with {text!r} within {timeout} s; got: {self.lines}") from None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


async def eventually(condition: Callable[[], bool], timeout: float = 10, what: str = "the condition") -> None:
    """Poll a (thread-safe, blocking) condition without blocking the loop."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        await asyncio.sleep(0.05)


def tarball(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def build_request(settings: Settings, build_id: str, files: dict[str, str], buildpack: str = "",
                  config: dict[str, str] | None = None, timeout: int = 60) -> BuildRequest:
    """Puts the source into storage and describes its build."""
    prefix = f"apps/{APP}/builds/{build_id}"
    storage_for(settings.storage).put_stream(f"{prefix}/source.tgz", io.BytesIO(tarball(files)))
    return BuildRequest(app=APP, build_id=build_id, source_key=f"{prefix}/source.tgz", slug_key=f"{prefix}/slug.tgz",
                        cache_key=f"apps/{APP}/cache/cache.tgz", config=config or {},
                        buildpack_url=str(BUILDPACKS / buildpack) if buildpack else "", timeout_seconds=timeout)


def release(version: int, slug_key: str = "apps/shop/builds/b1/slug.tgz", **overrides) -> ReleaseSpec:
    fields = dict(app=APP, version=version, build_id=slug_key.split("/")[-2], slug_key=slug_key,
                  config={"GREETING": "hello", "API_TOKEN": "tok-s3cr3t"},
                  processes={"web": "python3 -m http.server $PORT", "worker": "sleep infinity"},
                  formation={"web": 2, "worker": 1}, spec=parse(TERESA_YAML), reason="push")
    fields.update(overrides)
    return ReleaseSpec(**fields)
