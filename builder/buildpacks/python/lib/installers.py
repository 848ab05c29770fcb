"""Which file declares a Python app's dependencies, and the pinned requirements each one installs.

Every installer ends in `pip install --target .teresa/python/packages` with the chosen interpreter,
so the slug stays relocatable. A lockfile is first checked against its project by its own tool
(it fails the build when out of date) and exported with hashes; pip then installs exactly that
set (`--no-deps`, hashes required). The project itself is not installed (like `--no-root`): the
app runs from its directory.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import buildpack_kit as kit

UV = "uv==0.13.9"
POETRY = ("poetry==2.5.1", "poetry-plugin-export==1.10.1")
PIPENV = ("pipenv==2026.10.3",)


@dataclass(frozen=True)
class Requirements:
    """What pip installs: `-r file` (or a project directory) and any extra pip options."""

    source: str  # the app's file it came from, for the build output
    args: list[str]
    locked: bool = False


@dataclass(frozen=True)
class Context:
    build: Path
    cache: Path
    python: str  # the chosen interpreter
    env: dict[str, str]

    @property
    def scratch(self) -> Path:
        path = self.cache / "python" / "scratch"
        path.mkdir(parents=True, exist_ok=True)
        return path


# (file, installer) in order of precedence: the first file present chooses the installer.
ORDER = ("Pipfile.lock", "requirements.txt", "poetry.lock", "uv.lock", "pyproject.toml", "setup.py")


def choose(build: Path) -> str | None:
    if (build / "Pipfile").is_file() and not (build / "Pipfile.lock").is_file():
        kit.fail("There is a Pipfile but no Pipfile.lock; run `pipenv lock` and commit Pipfile.lock, so the versions installed are the ones you tested.")
    found = [name for name in ORDER if (build / name).is_file()]
    if not found:
        return None
    ignored = [name for name in found[1:] if name in ORDER[:4]]
    if ignored:
        kit.info(f"Installing from {found[0]}; ignoring {', '.join(ignored)} (delete what you do not use).")
    return found[0]


def requirements(ctx: Context, name: str) -> Requirements | None:
    return INSTALLERS[name](ctx)


def from_requirements_txt(ctx: Context) -> Requirements:
    return Requirements("requirements.txt", ["-r", "requirements.txt"])


def from_pyproject(ctx: Context) -> Requirements | None:
    try:
        project = tomllib.loads((ctx.build / "pyproject.toml").read_text()).get("project", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        kit.fail(f"pyproject.toml is not valid TOML ({exc}); fix it.")
    dependencies = project.get("dependencies", []) if isinstance(project, dict) else []
    if not dependencies:
        return from_setup_py(ctx) if (ctx.build / "setup.py").is_file() else None
    generated = ctx.scratch / "pyproject-requirements.txt"
    generated.write_text("\n".join(str(dep) for dep in dependencies) + "\n")
    return Requirements("pyproject.toml", ["-r", str(generated)])


def from_setup_py(ctx: Context) -> Requirements:
    return Requirements("setup.py", ["."])


def from_uv_lock(ctx: Context) -> Requirements:
    uv = uv_binary(ctx)
    out = ctx.scratch / "uv-requirements.txt"
    argv = [uv, "export", "--locked", "--no-default-groups", "--no-emit-project", "--format", "requirements-txt", "--no-header",
            "--output-file", str(out), "--python", ctx.python]  # fmt: skip
    env = {**ctx.env, "UV_PYTHON_DOWNLOADS": "never", "UV_CACHE_DIR": str(ctx.cache / "python" / "uv-cache"), "UV_NO_PROGRESS": "1"}
    if kit.run(argv, env, ctx.build, stdout=subprocess.DEVNULL) != 0:
        kit.fail("uv.lock does not match pyproject.toml (see above); run `uv lock` and commit uv.lock.")
    return Requirements("uv.lock", ["--no-deps", "-r", str(out)], locked=True)


def from_poetry_lock(ctx: Context) -> Requirements:
    poetry = tool(ctx, "poetry", POETRY)
    env = {**ctx.env, "POETRY_VIRTUALENVS_CREATE": "false", "POETRY_NO_INTERACTION": "1",
           "POETRY_CACHE_DIR": str(ctx.cache / "python" / "poetry-cache")}  # fmt: skip
    if kit.run([poetry, "check", "--lock"], env, ctx.build) != 0:
        kit.fail("poetry.lock does not match pyproject.toml (see above); run `poetry lock` and commit poetry.lock.")
    out = ctx.scratch / "poetry-requirements.txt"
    argv = [poetry, "export", "--only", "main", "--format", "requirements.txt", "--output", str(out)]
    if kit.run(argv, env, ctx.build) != 0:
        kit.fail("poetry could not export poetry.lock (see above); check that `poetry install --only main` works locally.")
    return Requirements("poetry.lock", ["--no-deps", "-r", str(out)], locked=True)


def from_pipfile_lock(ctx: Context) -> Requirements:
    pipenv = tool(ctx, "pipenv", PIPENV)
    env = {**ctx.env, "PIPENV_YES": "1", "PIPENV_NOSPIN": "1", "PIPENV_VERBOSITY": "-1", "PIPENV_IGNORE_VIRTUALENVS": "1",
           "PIPENV_CACHE_DIR": str(ctx.cache / "python" / "pipenv-cache")}  # fmt: skip
    if kit.run([pipenv, "verify"], env, ctx.build) != 0:
        kit.fail("Pipfile.lock does not match the Pipfile (see above); run `pipenv lock` and commit Pipfile.lock.")
    out = ctx.scratch / "pipenv-requirements.txt"
    with out.open("wb") as handle:
        if kit.run([pipenv, "requirements", "--hash"], env, ctx.build, stdout=handle) != 0:
            kit.fail("pipenv could not read Pipfile.lock (see above); run `pipenv lock` and commit Pipfile.lock.")
    return Requirements("Pipfile.lock", ["--no-deps", "-r", str(out)], locked=True)


INSTALLERS: dict[str, Callable[[Context], Requirements | None]] = {
    "Pipfile.lock": from_pipfile_lock,
    "requirements.txt": from_requirements_txt,
    "poetry.lock": from_poetry_lock,
    "uv.lock": from_uv_lock,
    "pyproject.toml": from_pyproject,
    "setup.py": from_setup_py,
}


def uv_binary(ctx: Context) -> str:
    """The stack's uv when it ships one, else uv from PyPI kept in the build cache."""
    if found := shutil.which("uv"):
        return found
    target = ctx.cache / "python" / "tools" / UV.replace("==", "-")
    binary = target / "bin" / "uv"
    if not binary.is_file():
        kit.step(f"Installing {UV} into the build cache")
        shutil.rmtree(target, ignore_errors=True)
        argv = [ctx.python, "-m", "pip", "install", "--quiet", "--target", str(target), "--no-deps", UV]
        if kit.run(argv, ctx.env, ctx.build) != 0 or not binary.is_file():
            kit.fail(f"{UV} could not be installed from PyPI (see above); check the network or PIP_INDEX_URL.")
    return str(binary)


def tool(ctx: Context, name: str, pins: tuple[str, ...]) -> str:
    """A Python tool (poetry, pipenv) in its own virtualenv in the build cache, installed with uv."""
    home = ctx.cache / "python" / "tools" / "-".join(pin.replace("==", "-") for pin in pins)
    executable = home / "bin" / name
    if executable.is_file():
        return str(executable)
    uv = uv_binary(ctx)
    kit.step(f"Installing {' '.join(pins)} into the build cache")
    shutil.rmtree(home, ignore_errors=True)
    env = {**ctx.env, "UV_CACHE_DIR": str(ctx.cache / "python" / "uv-cache"), "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    if (kit.run([uv, "venv", "--quiet", "--relocatable", "--python", ctx.python, str(home)], env, ctx.build) != 0
            or kit.run([uv, "pip", "install", "--quiet", "--python", str(home / "bin" / "python"), *pins], env, ctx.build) != 0):  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)
        kit.fail(f"{name} could not be installed from PyPI (see above); check the network or UV_INDEX_URL.")
    return str(executable)
