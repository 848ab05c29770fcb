"""Heroku-API buildpacks: the built-in ones, a local directory, or a git URL (optionally `#ref`).

Several buildpacks may build one app (a `.buildpacks` file, or a BUILDPACK_URL listing several):
they run in order, as Heroku's multi-buildpack does, and a later one sees what an earlier one
exported (its `export` file, sourced into the environment of the buildpacks after it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from builder import process
from builder.output import Output

BUILTIN_DIR = Path(__file__).parent / "buildpacks"
# Tried in this order when BUILDPACK_URL is unset; the first whose bin/detect succeeds builds the app.
BUILTIN_ORDER = ("nodejs", "python", "go", "static", "procfile")
DETECT_HINT = (
    "add a package.json (Node.js), requirements.txt or pyproject.toml (Python), go.mod (Go), "
    "index.html (static site) or a Procfile, or set BUILDPACK_URL"
)


class BuildpackError(Exception):
    """A buildpack cannot be fetched, is malformed, or failed; the message is one sentence."""


@dataclass
class Release:
    process_types: dict[str, str] = field(default_factory=dict)
    config_vars: dict[str, str] = field(default_factory=dict)


@dataclass
class Buildpack:
    path: Path
    label: str  # how the user named it: a built-in name, a path, or a URL without credentials

    def script(self, name: str) -> Path:
        return self.path / "bin" / name

    def check(self) -> None:
        for name in ("detect", "compile"):
            script = self.script(name)
            if not script.is_file():
                raise BuildpackError(
                    f"The buildpack {self.label} has no bin/{name}; a buildpack needs bin/detect, bin/compile and bin/release."
                )
            if not os.access(script, os.X_OK):
                raise BuildpackError(f"The buildpack {self.label} has a bin/{name} that is not executable; chmod +x it.")

    def detect(self, build_dir: Path, run: "Runner") -> str | None:
        """The name the buildpack gives the app (e.g. `Python`), or None when it does not apply."""
        result = run([str(self.script("detect")), str(build_dir)], capture_stdout=True)
        if result.status != 0:
            return None
        lines = result.stdout.decode(errors="replace").strip().splitlines()
        return lines[0].strip() if lines else self.path.name

    def compile(self, build_dir: Path, cache_dir: Path, env_dir: Path, run: "Runner") -> None:
        result = run([str(self.script("compile")), str(build_dir), str(cache_dir), str(env_dir)])
        if result.status != 0:
            raise BuildpackError(f"The {self.label} buildpack failed to compile the app (bin/compile exited with status {result.status}).")

    def release(self, build_dir: Path, run: "Runner") -> Release:
        script = self.script("release")
        if not script.is_file():
            return Release()
        result = run([str(script), str(build_dir)], capture_stdout=True)
        if result.status != 0:
            raise BuildpackError(f"The {self.label} buildpack's bin/release exited with status {result.status}.")
        return parse_release(result.stdout, self.label)


class Runner:
    """Runs buildpack scripts with a shared environment, output and deadline."""

    def __init__(self, out: Output, env: Mapping[str, str], deadline: float, cwd: Path) -> None:
        self.out, self.env, self.deadline, self.cwd = out, env, deadline, cwd

    def __call__(self, argv: list[str], capture_stdout: bool = False) -> process.Result:
        return process.run(
            argv, emit=self.out.raw, deadline=self.deadline, env=self.env, cwd=str(self.cwd), capture_stdout=capture_stdout
        )


def parse_release(stdout: bytes, label: str) -> Release:
    try:
        data: Any = yaml.safe_load(stdout.decode(errors="replace")) or {}
    except yaml.YAMLError:
        raise BuildpackError(f"The {label} buildpack's bin/release printed invalid YAML; it must print a YAML mapping.") from None
    if not isinstance(data, dict):
        raise BuildpackError(f"The {label} buildpack's bin/release did not print a YAML mapping.")
    types = data.get("default_process_types") or {}
    config = data.get("config_vars") or {}
    if not isinstance(types, dict) or not isinstance(config, dict):
        raise BuildpackError(f"The {label} buildpack's bin/release must give default_process_types and config_vars as mappings.")
    return Release(
        process_types={str(k): str(v) for k, v in types.items()},
        config_vars={str(k): str(v) for k, v in config.items()},
    )


def builtin(name: str) -> Buildpack:
    return Buildpack(BUILTIN_DIR / name, name)


def parse_list(text: str) -> list[str]:
    """Buildpack URLs from `.buildpacks` or BUILDPACK_URL: one per line or comma-separated; `#` starts a comment."""
    urls: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            continue
        urls.extend(part.strip() for part in line.split(",") if part.strip())
    return urls


def exported_env(pack: Buildpack, env: Mapping[str, str], run_dir: Path) -> dict[str, str] | None:
    """The environment after sourcing the buildpack's `export` file, or None when it wrote none."""
    export = pack.path / "export"
    if not export.is_file():
        return None
    script = '. "$1" >/dev/null 2>&1 || exit 3; env -0'
    result = subprocess.run(["bash", "-c", script, "export", str(export)], env=dict(env), cwd=run_dir,
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=60)  # fmt: skip
    if result.returncode != 0:
        raise BuildpackError(f"The {pack.label} buildpack's export file failed when sourced; fix its shell syntax.")
    pairs = (entry.partition(b"=") for entry in result.stdout.split(b"\0") if b"=" in entry)
    exported = {name.decode(errors="replace"): value.decode(errors="replace") for name, _, value in pairs}
    for name in ("_", "SHLVL", "PWD", "OLDPWD"):
        exported.pop(name, None)
        if name in env:
            exported[name] = env[name]
    return exported


def resolve(url: str, work_dir: Path, out: Output, deadline: float) -> Buildpack:
    """One buildpack URL: a built-in name, a local directory, or a git URL with an optional `#ref`.

    Each is copied or cloned into `work_dir`, so that its `export` file is written there."""
    if (name := url.removeprefix("heroku/")) in BUILTIN_ORDER:  # Heroku's names for its own, as in app.json
        pack = builtin_copy(name, work_dir)
        pack.label = url
    elif "://" not in url and not re.match(r"[\w.-]+@[\w.-]+:", url):  # not a URL nor user@host:path
        path = Path(url).expanduser()
        if not path.is_dir():
            raise BuildpackError(f"BUILDPACK_URL={url!r} is not a directory; point it at a buildpack directory or a git URL.")
        copy = _fresh_dir(work_dir)
        shutil.copytree(path.resolve(), copy, symlinks=True, ignore=shutil.ignore_patterns(".git", "export"))
        pack = Buildpack(copy, url)
    else:
        pack = _clone(url, _fresh_dir(work_dir), out, deadline)
    pack.check()
    return pack


def _fresh_dir(work_dir: Path) -> Path:
    return work_dir / f"buildpack-{len(list(work_dir.glob('buildpack-*')))}"


def builtin_copy(name: str, work_dir: Path) -> Buildpack:
    """A built-in buildpack from a private copy of all of them (they share `_lib`; the stack's copy may be read-only)."""
    copy = work_dir / "builtin-buildpacks"
    if not copy.is_dir():
        shutil.copytree(BUILTIN_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "export"))
    return Buildpack(copy / name, name)


def display_url(url: str) -> str:
    return re.sub(r"(://)[^/@]+@", r"\1", url)


def _clone(url: str, dest: Path, out: Output, deadline: float) -> Buildpack:
    repo, _, ref = url.partition("#")
    label = display_url(url)
    out.step(f"Fetching buildpack {label}")
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}

    def git(*args: str) -> int:
        return process.run(["git", *args], emit=lambda line: out.info(line.decode(errors="replace").rstrip()),
                           deadline=deadline, env=env).status  # fmt: skip

    shallow = ["clone", "--quiet", "--depth", "1", *(["--branch", ref] if ref else []), repo, str(dest)]
    if git(*shallow) != 0:
        shutil.rmtree(dest, ignore_errors=True)
        if not ref or git("clone", "--quiet", repo, str(dest)) != 0 or git("-C", str(dest), "checkout", "--quiet", ref) != 0:
            raise BuildpackError(f"Could not fetch the buildpack {label}; check BUILDPACK_URL and that the repository{' and ref' if ref else ''} exist.")
    return Buildpack(dest, label)
