"""Unpacked slugs: one directory per release, fetched with `teresa-slugrunner fetch` as the app's user.

The runner reads the slug from a descriptor the server opened (see staging.py); the
directory it unpacks into belongs to the app's user, so its processes own their files."""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from pathlib import Path
from typing import Sequence

from builder.slugrunner import SLUG_URL, SlugChanged
from controller.runtime.base import RuntimeFailure
from controller.runtime.local.processes import base_env, run_streaming
from controller.runtime.local.staging import Staging
from controller.runtime.local.tenancy import Tenancy
from controller.spec import ReleaseSpec
from core.storage import Storage, StorageError

KEEP_RELEASES = 3
RELEASE_DIR = re.compile(r"^v(\d+)$")


class SlugUnavailable(RuntimeFailure):
    pass


class SlugCache:
    def __init__(self, tenancy: Tenancy, slugrunner: Sequence[str], storage: Storage) -> None:
        self.tenancy = tenancy
        self.slugrunner = list(slugrunner)
        self.storage = storage
        self._locks: dict[Path, asyncio.Lock] = {}

    def releases_dir(self, app: str) -> Path:
        return self.tenancy.releases_dir(app)

    async def ensure(self, release: ReleaseSpec) -> Path:
        """The release's unpacked slug directory, fetching it the first time."""
        target = self.releases_dir(release.app) / release.label
        async with self._locks.setdefault(target, asyncio.Lock()):
            marker = target.with_suffix(".slug")
            if target.is_dir():
                if not marker.exists():
                    marker.write_text(release.slug_key)
                return target
            if same := self._unpacked_with(release):
                return same
            await self._fetch(release, target)
            marker.write_text(release.slug_key)
            return target

    def _unpacked_with(self, release: ReleaseSpec) -> Path | None:
        """Another release's directory holding the same slug (a scale or config release)."""
        for marker in self.releases_dir(release.app).glob("v*.slug"):
            directory = marker.with_suffix("")
            if directory.is_dir() and marker.read_text() == release.slug_key:
                return directory
        return None

    async def _fetch(self, release: ReleaseSpec, target: Path) -> None:
        app = release.app
        await asyncio.to_thread(self.tenancy.prepare, app)
        user = await asyncio.to_thread(self.tenancy.user, app)
        partial = Tenancy.owned(target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}"), user)
        tmp = self.tenancy.tmp_dir(app)
        tail: list[str] = []

        async def discard(_line: str) -> None:
            pass

        staging = await asyncio.to_thread(Staging, self.storage, self.tenancy.state_dir / app)
        try:
            try:
                grant = await asyncio.to_thread(staging.read, release.slug_key, sha256=release.slug_digest)
            except StorageError as exc:
                raise SlugUnavailable(f"The slug of {app} {release.label} could not be fetched ({exc}); "
                                      f"push again to rebuild it.") from None
            except SlugChanged as exc:
                raise SlugUnavailable(str(exc)) from None
            env = base_env({SLUG_URL: grant, "TERESA_APP_DIR": str(partial), "HOME": str(tmp),
                            "TMPDIR": str(tmp)})
            status = await run_streaming([*self.slugrunner, "fetch"], env, discard, tail=tail, tail_size=3,
                                         cwd=tmp, user=user, pass_fds=staging.fds)
            if status != 0:
                detail = " / ".join(tail) or f"exit status {status}"
                raise SlugUnavailable(f"The slug of {release.app} {release.label} could not be fetched ({detail}); "
                                      f"push again to rebuild it.")
            partial.rename(target)
        finally:
            await asyncio.to_thread(staging.__exit__, None, None, None)
            if partial.exists():
                await asyncio.to_thread(shutil.rmtree, partial, True)

    async def prune(self, app: str, in_use: set[Path], keep: int = KEEP_RELEASES) -> None:
        """Remove unpacked releases beyond the newest `keep`, except those in use."""
        found = sorted(
            (int(m.group(1)), d) for d in self.releases_dir(app).glob("v*") if (m := RELEASE_DIR.match(d.name))
        )
        for _, directory in found[:-keep] if keep else found:
            if directory not in in_use:
                await asyncio.to_thread(shutil.rmtree, directory, True)
                directory.with_suffix(".slug").unlink(missing_ok=True)
