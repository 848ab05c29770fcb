"""Processes left behind by a server that died without stopping its apps."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def find_orphans(apps_dir: Path) -> list[int]:
    """Pids of app processes (a DYNO and a TERESA_APP_DIR under `apps_dir`) this process did not start."""
    root = str(apps_dir.resolve()) + os.sep
    mine = os.getpid()
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == mine:
            continue
        env = _environ(int(entry.name))
        if env.get("DYNO") and env.get("TERESA_APP_DIR", "").startswith(root):
            found.append(int(entry.name))
    return found


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
