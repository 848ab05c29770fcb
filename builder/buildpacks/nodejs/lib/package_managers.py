"""Which package manager installs a Node.js app (npm, yarn classic or berry, pnpm), and its commands.

`packageManager` in package.json decides (`pnpm@9.15.0`, `yarn@4.5.3`, `npm@10.9.0`); without
it, the lockfile does: pnpm-lock.yaml, then yarn.lock, then package-lock.json / npm-shrinkwrap.json,
else npm. yarn and pnpm run through corepack, which downloads the version asked for from the npm
registry into COREPACK_HOME (in the build cache) and checks it against the `+sha...` suffix when given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import buildpack_kit as kit

LOCKFILES = {"pnpm": ("pnpm-lock.yaml",), "yarn": ("yarn.lock",), "npm": ("package-lock.json", "npm-shrinkwrap.json")}
SPEC = re.compile(r"(npm|yarn|pnpm)@(\d+)\.\d+\.\d+(?:[-+][\w.+-]*)?")


@dataclass(frozen=True)
class PackageManager:
    name: str  # npm, yarn, pnpm
    spec: str  # what packageManager says, or "" when chosen by lockfile
    berry: bool  # yarn 2 or later
    lockfile: str | None

    @property
    def label(self) -> str:
        return self.spec or self.name

    def command(self, corepack: str) -> list[str]:
        if self.name == "npm":
            return ["npm"]
        return [corepack, self.spec or self.name]

    def install(self) -> list[str]:
        frozen = {"npm": ["ci"], "pnpm": ["install", "--frozen-lockfile"],
                  "yarn": ["install", "--immutable"] if self.berry else ["install", "--frozen-lockfile"]}  # fmt: skip
        return frozen[self.name] if self.lockfile else ["install"]

    def prune(self) -> list[str] | None:
        """Removes devDependencies from node_modules (None: this manager cannot)."""
        if self.name == "npm":
            return ["prune", "--omit=dev"]
        if self.name == "pnpm":
            return ["prune", "--prod"]
        if self.berry:
            return ["workspaces", "focus", "--all", "--production"]
        return ["install", "--production", "--frozen-lockfile", "--ignore-scripts", "--prefer-offline"]


def choose(build: Path, package: dict) -> PackageManager:
    found = {name: next((f for f in files if (build / f).is_file()), None) for name, files in LOCKFILES.items()}
    declared = package.get("packageManager")
    if declared is not None:
        match = SPEC.fullmatch(declared) if isinstance(declared, str) else None
        if not match:
            kit.fail(f"packageManager is {declared!r} in package.json; write it like \"pnpm@9.15.0\" (name@exact version).")
        name = match[1]
        manager = PackageManager(name, declared, name == "yarn" and int(match[2]) >= 2, found[name])
    else:
        name = next((name for name in ("pnpm", "yarn", "npm") if found[name]), "npm")
        berry = name == "yarn" and ((build / ".yarnrc.yml").is_file() or not _classic_lockfile(build / "yarn.lock"))
        manager = PackageManager(name, "", berry, found[name])
    others = [lockfile for other, lockfile in found.items() if lockfile and other != manager.name]
    if others:
        kit.info(f"Using {manager.label}; ignoring {', '.join(others)} (delete the lockfiles of package managers you do not use).")
    return manager


def _classic_lockfile(path: Path) -> bool:
    return not path.is_file() or "# yarn lockfile v1" in path.read_text(errors="replace")[:200]


def environment(cache: Path, registry: str) -> dict[str, str]:
    """Settings that keep every package manager's downloads in the build cache and quiet."""
    return {
        "COREPACK_HOME": str(cache / "node" / "corepack"),
        "COREPACK_ENABLE_DOWNLOAD_PROMPT": "0",
        "COREPACK_ENABLE_STRICT": "0",
        "COREPACK_NPM_REGISTRY": registry,  # yarn 2+ from the npm registry, not repo.yarnpkg.com
        "npm_config_cache": str(cache / "node" / "npm-cache"),
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
        "npm_config_progress": "false",
        "npm_config_loglevel": "warn",
        "npm_config_store_dir": str(cache / "node" / "pnpm-store"),
        "npm_config_package_import_method": "copy",
        "YARN_CACHE_FOLDER": str(cache / "node" / "yarn-cache"),
        "YARN_GLOBAL_FOLDER": str(cache / "node" / "yarn-berry"),
        "YARN_ENABLE_TELEMETRY": "0",
        "YARN_ENABLE_PROGRESS_BARS": "false",
        "YARN_ENABLE_INLINE_BUILDS": "false",
        "CI": "true",
    }
