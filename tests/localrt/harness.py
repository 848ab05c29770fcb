"""A LocalRuntime on a temporary data dir, hand-made slugs, and HTTP through its router."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import io
import os
import importlib.util
import shlex
import shutil
import sys
import tarfile
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp

from controller.runtime.local import LocalRuntime, Timings
from controller.spec import ReleaseSpec
from controller.teresa_yaml import AppSpec, parse
from core.config import Settings, StorageSettings
from tests.fixtures.tenancy import apps_root, isolated

APPS = Path(__file__).parent / "apps"
PYTHON = shlex.quote(sys.executable)
WEB = f"{PYTHON} -u webapp.py"
FAST = Timings(backoff_initial=0.1, backoff_cap=0.4, backoff_reset_after=60, port_poll=0.05, min_stop_grace=1,
               min_ready=0.3, port_scan=0.2, wrong_port_grace=1.0, progress_interval=1.0)


def slugrunner() -> list[str] | None:
    """The real slug runner (the runtime's default) once it is installed, else a stand-in with its contract."""
    if importlib.util.find_spec("builder.slugrunner") is not None:
        return None
    return [sys.executable, str(Path(__file__).parent / "fake_slugrunner.py")]


def async_test(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))
    return wrapper


async def until(condition: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    """Poll `condition` (sync or async) until it is truthy; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def spec(yaml_text: str = "", drain: int = 0) -> AppSpec:
    parsed = parse(yaml_text or None)
    return dataclasses.replace(parsed, drain_timeout_seconds=drain) if "drainTimeout" not in yaml_text else parsed


class Harness:
    def __init__(self, tmp: Path, runtime: LocalRuntime, settings: Settings) -> None:
        self.tmp = tmp
        self.rt = runtime
        self.settings = settings
        self.lines: list[str] = []
        self.http: aiohttp.ClientSession | None = None

    async def out(self, line: str) -> None:
        self.lines.append(line)

    async def ps(self, app: str) -> list:
        """The app's processes once replaced ones have finished draining (deploy does not wait for that)."""
        await self.rt.supervisor(app).wait_retired()
        return await self.rt.ps(app)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.rt.router.port}"

    def slug(self, app: str, version: int, procfile: dict[str, str], extra: dict[str, str] | None = None) -> Path:
        """Unpack a hand-made slug where the runtime keeps release `version` of `app`."""
        self.rt.tenancy.prepare(app)
        target = self.rt.tenancy.releases_dir(app) / f"v{version}"
        self.write_slug(target, procfile, extra)
        if user := self.rt.tenancy.user(app):  # as the runtime's own fetch leaves it: the app's user owns it
            for path in [target, *target.rglob("*")]:
                os.lchown(path, user.uid, user.gid)
        return target

    @staticmethod
    def write_slug(target: Path, procfile: dict[str, str], extra: dict[str, str] | None = None) -> None:
        target.mkdir(parents=True, exist_ok=True)
        for name in ("webapp.py", "wsapp.py", "worker.py"):
            shutil.copy(APPS / name, target / name)
        (target / "Procfile").write_text("".join(f"{t}: {c}\n" for t, c in procfile.items()))
        for name, text in (extra or {}).items():
            (target / name).write_text(text)

    def store_slug(self, key: str, procfile: dict[str, str]) -> None:
        """Put a slug tarball into the (local) object storage under `key`."""
        build = self.tmp / f"slug-{abs(hash(key))}"
        self.write_slug(build, procfile)
        tarball = self.tmp / f"{build.name}.tgz"
        with tarfile.open(tarball, "w:gz") as tar:
            tar.add(build, arcname=".")
        if importlib.util.find_spec("core.storage") is not None:
            from core.storage import storage_for
            storage_for(self.settings.storage).put_file(key, tarball)
        else:
            target = self.settings.storage.root / key
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(tarball, target)

    def store_source(self, key: str, text: str) -> None:
        from core.storage import storage_for
        storage_for(self.settings.storage).put_stream(key, io.BytesIO(text.encode()))

    def release(self, app: str, version: int, *, processes: dict[str, str] | None = None,
                formation: dict[str, int] | None = None, app_spec: AppSpec | None = None,
                config: dict[str, str] | None = None, slug: bool = True, **kwargs: Any) -> ReleaseSpec:
        processes = processes or {"web": WEB}
        if slug:
            self.slug(app, version, processes)
        return ReleaseSpec(
            app=app, version=version, build_id=f"b{version}", slug_key=f"apps/{app}/builds/b{version}/slug.tgz",
            config=config or {}, processes=processes, formation=formation or {}, spec=app_spec or spec(),
            **kwargs,
        )

    async def get(self, app: str, path: str = "/", **kwargs: Any) -> tuple[int, str]:
        assert self.http is not None
        headers = {"Host": f"{app}.localhost:8080", **kwargs.pop("headers", {})}
        async with self.http.get(self.base + path, headers=headers, **kwargs) as response:
            return response.status, await response.text()

    async def answers(self, app: str, text: str | None = None) -> bool:
        status, body = await self.get(app)
        return status == 200 and (text is None or text in body)

    def alive(self, app: str, process_type: str = "web") -> list:
        return self.rt.supervisor(app).live(process_type)


@contextlib.asynccontextmanager
async def harness(tmp: Path, rollout_timeout: int = 30, start: bool = True,
                  timings: Timings = FAST) -> AsyncIterator[Harness]:
    settings = Settings(
        data_dir=tmp / "data", apps_dir=apps_root(), app_isolation=isolated(), router_addr=("127.0.0.1", 0), rollout_timeout=rollout_timeout,
        storage=StorageSettings(root=tmp / "storage"),
    )
    runtime = LocalRuntime(settings, slugrunner=slugrunner(), timings=timings)
    h = Harness(tmp, runtime, settings)
    if start:
        await runtime.start()
    async with aiohttp.ClientSession() as h.http:
        try:
            yield h
        finally:
            await runtime.stop()


def new_runtime(h: Harness) -> LocalRuntime:
    return LocalRuntime(h.settings, slugrunner=slugrunner(), timings=FAST)
