"""The apps' bare repositories under the data directory."""

from __future__ import annotations

import shutil
from pathlib import Path

from dulwich.repo import Repo

from core import names
from core.commands import CommandError, shown
from core.private import private_dir


def app_from_git_path(path: str) -> str:
    """`/myapp.git`, `myapp.git`, `/myapp`, `~/myapp` -> `myapp`."""
    name = path.strip().removeprefix("~/").strip("/").removesuffix("/").removesuffix(".git")
    if not name or "/" in name:
        raise CommandError(f"'{shown(path)}' is not an app repository; push to ssh://git@HOST:PORT/APP.git.")
    return names.app_name(name)


def repo_path(data_dir: Path, app: str) -> Path:
    return data_dir / "repos" / f"{app}.git"


def open_or_create(data_dir: Path, app: str) -> Path:
    path = repo_path(data_dir, app)
    if not (path / "HEAD").exists():
        private_dir(path.parent)
        private_dir(path)
        Repo.init_bare(str(path)).close()
        (path / "HEAD").write_text("ref: refs/heads/main\n")
    return path


def remove(data_dir: Path, app: str) -> None:
    shutil.rmtree(repo_path(data_dir, app), ignore_errors=True)
