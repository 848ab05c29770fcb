"""Helpers shared by Teresa's built-in buildpacks (standard library only: they run on the stack's python3)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import IO, Iterable, Mapping, NoReturn

INDENT = "       "
# Config vars that would break the build tools if exported into the build (as on Heroku).
UNSAFE_ENV = {"PATH", "GIT_DIR", "CPATH", "CPPATH", "LD_PRELOAD", "LIBRARY_PATH", "LD_LIBRARY_PATH", "PYTHONHOME"}


def step(text: str) -> None:
    print(f"-----> {text}", flush=True)


def info(text: str) -> None:
    print(f"{INDENT}{text}", flush=True)


def fail(text: str) -> NoReturn:
    print(f" !     {text}", flush=True)
    sys.exit(1)


def args() -> tuple[Path, Path, Path]:
    """bin/compile BUILD_DIR CACHE_DIR ENV_DIR"""
    build, cache, env = (Path(arg) for arg in sys.argv[1:4])
    return build, cache, env


def build_env(env_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment plus the app's config vars from ENV_DIR."""
    env = dict(os.environ)
    if env_dir.is_dir():
        for entry in sorted(env_dir.iterdir()):
            if entry.is_file() and entry.name not in UNSAFE_ENV:
                env[entry.name] = entry.read_text()
    env.update(extra)
    return env


def run(argv: list[str], env: Mapping[str, str], cwd: Path, stdout: IO[bytes] | int | None = None) -> int:
    """Run a tool, relaying its output indented, line by line as it comes (or only its stderr, with `stdout`)."""
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if stdout is None else stdout,
                                stderr=subprocess.STDOUT if stdout is None else subprocess.PIPE)  # fmt: skip
    except FileNotFoundError:
        fail(f"{argv[0]} is not installed on this stack.")
    relayed = proc.stdout if stdout is None else proc.stderr
    assert relayed is not None
    with relayed:
        for raw in relayed:
            line = raw.decode(errors="replace").rstrip()
            print(f"{INDENT}{line}" if line else "", flush=True)
    return proc.wait()


def run_hook(build: Path, name: str, env: Mapping[str, str]) -> None:
    """Run the app's `bin/NAME` (e.g. pre_compile) if it has one; its failure fails the build."""
    script = build / "bin" / name
    if not script.is_file():
        return
    step(f"Running bin/{name} hook")
    argv = [str(script)] if script.read_bytes()[:2] == b"#!" else ["bash", str(script)]
    script.chmod(script.stat().st_mode | 0o111)
    if run(argv, env, build) != 0:
        fail(f"bin/{name} failed (see its output above); fix it or remove it.")


def write_environment(build: Path, name: str, lines: Iterable[str]) -> None:
    """Shell `lines` using $HOME for the app directory: into .profile.d/NAME.sh (run time) and into
    the buildpack's `export` file (with the build directory instead), for buildpacks that run after it."""
    lines = list(lines)
    write_profile(build, f"{name}.sh", lines)
    export = Path(sys.argv[0]).resolve().parents[1] / "export"
    try:
        export.write_text("\n".join(line.replace("$HOME", str(build)) for line in lines) + "\n")
    except OSError:
        info("(Could not write this buildpack's export file; buildpacks after it will not see its tools.)")


def digest(paths: Iterable[Path], *extra: str) -> str:
    """A fingerprint of some files' contents (missing files count) and extra strings."""
    sha = hashlib.sha256()
    for path in paths:
        sha.update(path.name.encode() + b"\0")
        sha.update(path.read_bytes() if path.is_file() else b"<missing>")
        sha.update(b"\0")
    for value in extra:
        sha.update(value.encode() + b"\0")
    return sha.hexdigest()


def cached(cache: Path, fingerprint: str) -> bool:
    """Whether `cache` holds a saved tree for exactly this fingerprint."""
    return (cache / "fingerprint").is_file() and (cache / "fingerprint").read_text() == fingerprint and (cache / "tree").is_dir()


def copy_tree(source: Path, dest: Path) -> None:
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, dest, symlinks=True)


def save_cache(source: Path, cache: Path, fingerprint: str) -> None:
    if not source.is_dir():
        return
    (cache / "fingerprint").unlink(missing_ok=True)
    copy_tree(source, cache / "tree")
    (cache / "fingerprint").write_text(fingerprint)


def write_profile(build_dir: Path, name: str, lines: Iterable[str]) -> None:
    profile = build_dir / ".profile.d" / name
    profile.parent.mkdir(exist_ok=True)
    profile.write_text("\n".join(lines) + "\n")
