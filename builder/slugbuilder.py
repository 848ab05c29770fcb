"""teresa-slugbuilder: turn a source tarball in storage into a slug, with buildpacks.

Configured by environment only (see builder/job.py and docs/buildpacks.md): the URLs granted
for this build's own objects (TERESA_SOURCE_URL, TERESA_SLUG_UPLOAD_URL, …), BUILDPACK_URL,
TERESA_BUILD_CONFIG and TERESA_BUILD_TIMEOUT. It holds no storage credential. It prints lines for a
human and exits 0 on success.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import BinaryIO, Mapping

from builder import archive, buildpack, job, procfile, slugignore, transfer
from builder.buildpack import Buildpack, BuildpackError, Release, Runner
from builder.output import Output
from builder.process import TimedOut

CONFIG_PROFILE = ".profile.d/000-buildpack-config-vars.sh"
STACK_SETTINGS = job.STACK_SETTINGS


class BuildError(Exception):
    """The build cannot go on; the message is one sentence naming the problem and the fix."""


@dataclass(frozen=True)
class BuildSettings:
    grants: job.Grants
    buildpack_url: str = ""
    config: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: int = job.DEFAULT_TIMEOUT

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "BuildSettings":
        try:
            request = job.BuildJob.from_env(env)
        except job.JobError as exc:
            raise BuildError(str(exc)) from None
        return cls(grants=request.grants, buildpack_url=request.buildpack_url, config=request.config,
                   timeout=request.timeout_seconds)


def buildpack_env(env: Mapping[str, str]) -> dict[str, str]:
    """What buildpack scripts see: the environment without Teresa's own settings (the build's grants).

    The stack's settings (`TERESA_STACK_*`: which interpreters and runtimes it carries) stay."""
    clean = {k: v for k, v in env.items()
             if (not k.startswith("TERESA") or k.startswith(STACK_SETTINGS)) and k != "BUILDPACK_URL"}  # fmt: skip
    clean.update(STACK="teresa", PYTHONUNBUFFERED="1")
    return clean


class Build:
    def __init__(self, settings: BuildSettings, out: Output, work: Path) -> None:
        self.settings, self.out = settings, out
        self.build_dir, self.cache_dir, self.env_dir = work / "app", work / "cache", work / "env"
        self.work = work
        self.deadline = time.monotonic() + settings.timeout
        self.run = Runner(out, buildpack_env(os.environ), self.deadline, self.build_dir)

    def __call__(self) -> None:
        self.fetch_source()
        declared = self.read_procfile()
        self.restore_cache()
        self.write_env_dir()
        release = self.compile(self.select_buildpacks())
        processes = self.write_runtime_files(declared, release)
        self.upload_slug()
        self.save_cache()
        self.report(processes, declared)

    def fetch_source(self) -> None:
        tarball = self.work / "source.tgz"
        try:
            transfer.download(self.settings.grants.source, tarball)
        except transfer.NotFound:
            raise BuildError("The pushed source is not in storage any more; push again.") from None
        archive.extract(tarball, self.build_dir, what="source tarball")
        tarball.unlink()
        if removed := slugignore.apply(self.build_dir):
            self.out.step(f"Removed {len(removed)} path{'s' * (len(removed) != 1)} listed in .slugignore")

    def read_procfile(self) -> dict[str, str]:
        path = self.build_dir / "Procfile"
        if not path.is_file():
            return {}
        try:
            return procfile.parse(path.read_text())
        except UnicodeDecodeError:
            raise BuildError("The Procfile is not UTF-8 text; save it as UTF-8.") from None
        except procfile.ProcfileError as exc:
            raise BuildError(str(exc)) from None

    def restore_cache(self) -> None:
        self.cache_dir.mkdir()
        if not self.settings.grants.cache:
            return
        tarball = self.work / "cache.tgz"
        try:
            transfer.download(self.settings.grants.cache, tarball)
        except transfer.NotFound:
            return
        try:
            archive.extract(tarball, self.cache_dir, what="build cache")
        except archive.ArchiveError:
            self.out.info("The build cache could not be restored; building without it.")
            _empty(self.cache_dir)
        tarball.unlink()

    def write_env_dir(self) -> None:
        self.env_dir.mkdir()
        for name, value in self.settings.config.items():
            (self.env_dir / name).write_text(value)

    def buildpack_urls(self) -> list[str]:
        """BUILDPACK_URL (one or several), else the app's `.buildpacks` file; empty means detect."""
        if self.settings.buildpack_url:
            return buildpack.parse_list(self.settings.buildpack_url)
        listing = self.build_dir / ".buildpacks"
        if listing.is_file() and not listing.is_symlink():
            try:
                urls = buildpack.parse_list(listing.read_text())
            except UnicodeDecodeError:
                raise BuildError("The .buildpacks file is not UTF-8 text; save it as UTF-8.") from None
            if not urls:
                raise BuildError("The .buildpacks file lists no buildpacks; list one URL per line, or delete it.")
            return urls
        return []

    def select_buildpacks(self) -> list[Buildpack]:
        urls = self.buildpack_urls()
        if urls:
            packs = []
            for url in urls:
                pack = buildpack.resolve(url, self.work, self.out, self.deadline)
                name = pack.detect(self.build_dir, self.run)
                if name is None:
                    where = "BUILDPACK_URL" if self.settings.buildpack_url else ".buildpacks"
                    raise BuildError(f"The buildpack {pack.label} does not support this app (its bin/detect said no); check {where}.")
                self.out.step(f"{name} app detected")
                packs.append(pack)
            return packs
        for candidate in map(buildpack.builtin, buildpack.BUILTIN_ORDER):
            if (name := candidate.detect(self.build_dir, self.run)) is not None:
                self.out.step(f"{name} app detected")
                return [buildpack.builtin_copy(candidate.label, self.work)]
        raise BuildError(f"No buildpack recognises this app; {buildpack.DETECT_HINT}.")

    def compile(self, packs: list[Buildpack]) -> Release:
        """Compile with each buildpack in order; later ones see what earlier ones exported.

        The process types are the last declaring buildpack's; config vars merge, later ones winning."""
        merged = Release()
        for index, pack in enumerate(packs, start=1):
            if len(packs) > 1:
                self.out.step(f"Buildpack {index} of {len(packs)}: {pack.label}")
            pack.compile(self.build_dir, self.cache_dir, self.env_dir, self.run)
            release = pack.release(self.build_dir, self.run)
            merged.process_types = release.process_types or merged.process_types
            merged.config_vars.update(release.config_vars)
            if index < len(packs) and (env := buildpack.exported_env(pack, self.run.env, self.build_dir)) is not None:
                self.run.env = env
        return merged

    def write_runtime_files(self, declared: dict[str, str], release: Release) -> dict[str, str]:
        processes = dict(declared)
        for kind, command in release.process_types.items():
            processes.setdefault(kind, command)
        path = self.build_dir / "Procfile"
        path.unlink(missing_ok=True)  # never write through a symlink
        path.write_text(procfile.render(processes))
        if release.config_vars:
            profile = self.build_dir / CONFIG_PROFILE
            profile.parent.mkdir(exist_ok=True)
            profile.write_text(_profile_defaults(release.config_vars))
        return processes

    def upload_slug(self) -> None:
        self.out.step("Compressing...")
        slug = self.work / "slug.tgz"
        archive.pack(self.build_dir, slug, skip=lambda rel: rel == ".git" or rel.startswith(".git/"))
        self.out.info(f"Done: {_size(slug.stat().st_size)}")
        transfer.upload(slug, self.settings.grants.slug)
        slug.unlink()
        procfile_path = self.build_dir / "Procfile"
        if procfile_path.is_file():  # beside the slug, so the controller need not open the slug
            transfer.upload(procfile_path, self.settings.grants.procfile)

    def save_cache(self) -> None:
        if not self.settings.grants.cache_upload:
            return
        tarball = self.work / "cache-out.tgz"
        archive.pack(self.cache_dir, tarball)
        transfer.upload(tarball, self.settings.grants.cache_upload)

    def report(self, processes: dict[str, str], declared: dict[str, str]) -> None:
        self.out.step("Discovering process types")
        self.out.info(f"Procfile declares types -> {', '.join(processes) or '(none)'}")
        defaults = [kind for kind in processes if kind not in declared]
        if defaults:
            self.out.info(f"Default types for buildpack -> {', '.join(defaults)}")


def _profile_defaults(config_vars: Mapping[str, str]) -> str:
    """Shell that sets each buildpack config var unless the app's own config already does."""
    lines = ["# Written by teresa-slugbuilder from the buildpack's bin/release config_vars."]
    for name, value in config_vars.items():
        if job.ENV_NAME.fullmatch(name):
            lines.append(f'[ -n "${{{name}+set}}" ] || export {name}={shlex.quote(value)}')
    return "\n".join(lines) + "\n"


def _size(size: int) -> str:
    return f"{size / (1 << 20):.1f}M" if size >= 1 << 20 else f"{max(1, size // 1024)}K"


def _empty(directory: Path) -> None:
    shutil.rmtree(directory)
    directory.mkdir()


def _on_alarm(_signum: int, _frame: FrameType | None) -> None:
    raise TimedOut()


class Stopped(Exception):
    """The slugbuilder was asked to stop (SIGTERM or SIGINT)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_term(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signum)


def build(env: Mapping[str, str], stream: BinaryIO | None = None) -> int:
    """Run one build; returns the exit status. The last line printed names any failure."""
    try:
        settings = BuildSettings.from_env(env)
    except BuildError as exc:
        Output(stream).error(str(exc))
        return 2
    out = Output(stream, secrets=settings.config)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    try:
        with tempfile.TemporaryDirectory(prefix="teresa-build-") as work:
            Build(settings, out, Path(work))()
        return 0
    except Stopped as stop:
        out.error("Build stopped: the slugbuilder was asked to stop before the build finished.")
        return 128 + stop.signum
    except TimedOut:
        out.error(f"Build timed out after {settings.timeout} seconds; make it faster or raise TERESA_BUILD_TIMEOUT.")
        return job.TIMED_OUT
    except (BuildError, BuildpackError, archive.ArchiveError, transfer.TransferError) as exc:
        out.error(f"Build failed: {exc}")
    except Exception as exc:  # never a traceback: one line naming what broke
        out.error(f"Build failed: {type(exc).__name__}: {str(exc).rstrip('.') or 'no details'}.")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return 1


def main() -> None:
    sys.exit(build(os.environ))


if __name__ == "__main__":
    main()
