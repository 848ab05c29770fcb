"""What each app runs, kept on disk so the runtime brings it back after a restart."""

from __future__ import annotations

import os
from pathlib import Path

from controller.spec import ReleaseSpec

CURRENT = "current.json"


def save_current(app_root: Path, release: ReleaseSpec) -> None:
    """Atomically write the release, readable by the owner only (it holds config values)."""
    app_root.mkdir(parents=True, exist_ok=True)
    partial = app_root / f".{CURRENT}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(release.to_json())
    os.chmod(partial, 0o600)
    partial.replace(app_root / CURRENT)


def load_current(app_root: Path) -> ReleaseSpec | None:
    try:
        return ReleaseSpec.from_json((app_root / CURRENT).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def forget_current(app_root: Path) -> None:
    """The app runs nothing after a restart."""
    (app_root / CURRENT).unlink(missing_ok=True)
