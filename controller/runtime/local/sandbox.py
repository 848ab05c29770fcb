"""What an app's processes see of this machine when Teresa runs as root: a mount namespace of their own.

Every build, process and one-off of an app starts through `sandbox_enter.py`, which makes the
mounts below in a fresh mount namespace, drops to the app's uid and gid, and execs the command:

- Teresa's own install (its interpreter, virtualenv and code) and the stack's runtimes (the
  Python, Node.js ... interpreters builds use), read-only, wherever they live: when one is inside
  a directory other uids cannot enter (`/root`, 0700, holding a pyenv or the clone itself), that
  directory is replaced by an empty tmpfs showing only them;
- the platform's state (the data directory, local storage) absent, under an empty tmpfs;
- the apps directory empty but for the app's own directory, writable.

So app users need no way into `/root`, and one app never sees another's directory at all.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import builder
from builder.buildpacks._lib import stack

ENTER = Path(__file__).with_name("sandbox_enter.py")
Mount = tuple[str, str]  # (hide | ro | rw, absolute path)


def passable(path: Path) -> bool:
    """Whether any uid can walk down to `path` (every directory on the way, and it, has o+x)."""
    for step in [*reversed(path.parents), path]:
        try:
            if not os.stat(step).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def first_closed(path: Path) -> Path | None:
    """The outermost directory on the way to `path` that other uids cannot enter."""
    return next((step for step in [*reversed(path.parents), path] if not passable(step)), None)


def teresa_paths() -> list[Path]:
    """What runs Teresa's programs: the virtualenv, the interpreter it was made from, and Teresa's code."""
    code = Path(builder.__file__).resolve().parent.parent
    return [Path(sys.prefix), Path(os.path.realpath(sys.base_prefix)), code]


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """`paths` without those inside another of them."""
    unique = sorted(set(paths), key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in unique:
        if not any(path == k or k in path.parents for k in kept):
            kept.append(path)
    return kept


@dataclass(frozen=True)
class SandboxPlan:
    """The mounts every app shares; `for_app` adds its own directory."""

    shared: tuple[Mount, ...]
    work_root: Path

    @classmethod
    def make(cls, work_root: Path, private: Sequence[Path], env: Mapping[str, str]) -> "SandboxPlan":
        wanted = [*teresa_paths(), *(Path(root) for root in stack.install_roots(env))]
        shown = _outermost(path for path in wanted if path.is_dir() and not passable(path))
        closed = _outermost(c for path in shown if (c := first_closed(path)) is not None)
        hidden = _outermost(path.absolute() for path in private)
        mounts = [*(("hide", str(p)) for p in closed), *(("ro", str(p)) for p in shown),
                  *(("hide", str(p)) for p in hidden), ("hide", str(work_root))]
        # Parents before children: a mount inside another is made after it.
        return cls(tuple(sorted(mounts, key=lambda m: len(Path(m[1]).parts))), work_root)

    def for_app(self, app: str) -> tuple[Mount, ...]:
        return (*self.shared, ("rw", str(self.work_root / app)))


def command(mounts: Sequence[Mount], uid: int, gid: int, argv: Sequence[str]) -> list[str]:
    """`argv` started in a sandbox made of `mounts`, as `uid`:`gid` (the caller stays root until then)."""
    spec = json.dumps({"uid": uid, "gid": gid, "mounts": [list(m) for m in mounts]}, separators=(",", ":"))
    return [sys.executable, "-I", "-S", str(ENTER), spec, "--", *argv]
