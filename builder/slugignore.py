"""`.slugignore`: paths (gitignore syntax) removed from the app before the buildpack runs, as on Heroku."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pathspec


def apply(build_dir: Path) -> list[str]:
    """Delete what `.slugignore` matches; returns the removed paths, relative to `build_dir`."""
    ignore_file = build_dir / ".slugignore"
    if not ignore_file.is_file() or ignore_file.is_symlink():
        return []
    spec = pathspec.GitIgnoreSpec.from_lines(ignore_file.read_text(errors="replace").splitlines())
    removed = []
    for dirpath, dirnames, filenames in os.walk(build_dir):
        base = Path(dirpath)
        rel_base = base.relative_to(build_dir).as_posix()
        prefix = "" if rel_base == "." else rel_base + "/"
        for name in list(dirnames):
            if spec.match_file(f"{prefix}{name}/"):
                dirnames.remove(name)
                target = base / name
                target.unlink() if target.is_symlink() else shutil.rmtree(target)
                removed.append(prefix + name)
        for name in filenames:
            if spec.match_file(prefix + name):
                (base / name).unlink()
                removed.append(prefix + name)
    return removed
