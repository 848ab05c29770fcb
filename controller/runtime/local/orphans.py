"""Processes left behind by a server that died without stopping them: app processes and builds.

A process is this data directory's when its environment says so: app processes
carry a DYNO and a TERESA_APP_DIR under the apps directory, slugbuilders a
TERESA_BUILDER_FOR naming it. Everything they started goes with them (found by
parent pid: build steps run in sessions of their own, and buildpack scripts do
not inherit Teresa's variables).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

BUILDER_MARK = "TERESA_BUILDER_FOR"  # in a slugbuilder's environment: the apps directory it builds for


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def _parents() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return parents


def find_orphans(apps_dir: Path) -> list[int]:
    """Pids of this data directory's app processes and slugbuilders that this process did not start,
    and of everything below them."""
    root = str(apps_dir.resolve())
    mine = os.getpid()
    parents = _parents()
    roots = set()
    for pid, parent in parents.items():
        if pid == mine:
            continue
        env = _environ(pid)
        if (env.get("DYNO") and env.get("TERESA_APP_DIR", "").startswith(root + os.sep)) or \
                env.get(BUILDER_MARK) == root:
            roots.add(pid)
    found, frontier = set(roots), roots
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return sorted(found)


def reap_orphans(apps_dir: Path, grace: float = 2.0) -> list[int]:
    """SIGTERM the orphans, SIGKILL those still there after `grace` seconds (blocking: run in a thread)."""
    pids = find_orphans(apps_dir)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while (alive := [p for p in pids if _exists(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in alive:
        _signal(pid, signal.SIGKILL)
    return pids


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False
