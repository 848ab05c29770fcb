"""The runtimes a stack carries (Python interpreters, Node.js versions): an explicit list, never a PATH search.

A runtime is listed by a setting (e.g. `TERESA_STACK_PYTHONS="3.12=/opt/python/3.12/bin/python3,..."`,
entries separated by commas, whitespace or newlines; a `VERSION=` label is optional and only for
the reader) and found in the stack's install directories (glob patterns). Each candidate is run
once to learn its exact version; shims (pyenv, nodenv, asdf) are skipped, since they pick a
version by reading the app's own files.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

SHIM_DIRS = re.compile(r"/(shims|\.asdf/shims|\.nodenv/shims|\.pyenv/shims)/")
VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")
# Where each kind of runtime is found when its `TERESA_STACK_*_DIRS` setting is not set (glob patterns).
INSTALL_DIRS = {
    "python": ("/opt/python/*/bin/python3", "/usr/local/bin/python3.[0-9]*", "/usr/bin/python3.[0-9]*",
               "~/.pyenv/versions/*/bin/python3", "/root/.pyenv/versions/*/bin/python3"),
    "node": ("/usr/local/bin/node", "/usr/bin/node", "/opt/node/*/bin/node", "/usr/local/lib/nodejs/*/bin/node",
             "~/.nvm/versions/node/*/bin/node"),
}
# The settings that list a kind's runtimes, and those that replace its install directories.
SETTINGS = {"python": ("TERESA_STACK_PYTHONS", "TERESA_STACK_PYTHON_DIRS"),
            "node": ("TERESA_STACK_NODES", "TERESA_STACK_NODE_DIRS")}


@dataclass(frozen=True, order=True)
class Runtime:
    version: tuple[int, int, int]
    path: str

    @property
    def dotted(self) -> str:
        return ".".join(map(str, self.version))


def setting_paths(value: str) -> list[str]:
    """Paths from a setting like `3.11=/usr/bin/python3.11, /opt/python/3.12/bin/python3`."""
    return [entry.split("=", 1)[-1] for entry in re.split(r"[,\s]+", value.strip()) if entry]


def candidates(kind: str, env: Mapping[str, str]) -> list[str]:
    """The executables a kind's setting lists and its install directories hold (not yet probed)."""
    listed, dirs = SETTINGS[kind]
    patterns = setting_paths(env[dirs]) if dirs in env else INSTALL_DIRS[kind]
    found = setting_paths(env.get(listed, ""))
    for pattern in patterns:
        found.extend(sorted(glob.glob(os.path.expanduser(pattern))))
    return found


def install_roots(env: Mapping[str, str]) -> set[str]:
    """The directories the stack's runtimes are installed in (`/root/.pyenv/versions/3.12.1` for its
    `bin/python3`): what a build or an app must be able to read to run them."""
    roots = set()
    for kind in SETTINGS:
        for path in candidates(kind, env):
            if not SHIM_DIRS.search(path) and os.path.isfile(real := os.path.realpath(path)):
                roots.add(os.path.dirname(os.path.dirname(real)))
    return roots


def discover(setting: str, patterns: Iterable[str], version_argv: Sequence[str], name: str = r".*",
             cache: str | None = None) -> list[Runtime]:
    """Every runtime listed or found, newest first, one per real executable.

    `version_argv` is appended to the executable to print its version (e.g. `--version`); found
    files whose name does not match the regular expression `name` are skipped (`python3.11-config`).
    With `cache` (a JSON file in the app's build cache), a version learnt in an earlier build is
    reused while the executable's file is unchanged: probing every runtime of a stack costs a
    process start each, a good part of a small app's build."""
    candidates = setting_paths(setting)
    for pattern in patterns:
        found_here = sorted(glob.glob(os.path.expanduser(pattern)))
        candidates.extend(path for path in found_here if re.fullmatch(name, os.path.basename(path)))
    known = _load(cache)
    learnt: dict[str, list[int]] = {}
    found: dict[str, Runtime] = {}
    for candidate in candidates:
        if SHIM_DIRS.search(candidate) or not os.access(candidate, os.X_OK) or os.path.isdir(candidate):
            continue
        real = os.path.realpath(candidate)
        if real in found:
            continue
        key = _identity(real)
        version = tuple(known[key]) if key in known else probe(candidate, version_argv)
        if version:
            found[real] = Runtime(version, candidate)  # type: ignore[arg-type]
            learnt[key] = list(version)
    if cache and learnt != known:
        _save(cache, learnt)
    return sorted(found.values(), reverse=True)


def _identity(real: str) -> str:
    """The executable as a cache key: its path, size and modification time."""
    info = os.stat(real)
    return f"{real}:{info.st_size}:{info.st_mtime_ns}"


def _load(cache: str | None) -> dict[str, list[int]]:
    try:
        with open(cache or "", encoding="utf-8") as handle:
            data = json.load(handle)
        return {str(k): [int(n) for n in v][:3] for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError, TypeError):
        return {}


def _save(cache: str, versions: dict[str, list[int]]) -> None:
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        with open(cache, "w", encoding="utf-8") as handle:
            json.dump(versions, handle)
    except OSError:
        pass  # a cache that cannot be written only costs the next build its probes


def probe(executable: str, version_argv: Sequence[str]) -> tuple[int, int, int] | None:
    try:
        result = subprocess.run([executable, *version_argv], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = VERSION.search(result.stdout + result.stderr) if result.returncode == 0 else None
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def listing(runtimes: Sequence[Runtime]) -> str:
    """`3.13.0, 3.12.1 and 3.11.7` for an error sentence."""
    names = [runtime.dotted for runtime in runtimes]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def newest_matching(runtimes: Sequence[Runtime], accepts: Callable[[tuple[int, int, int]], bool]) -> Runtime | None:
    return next((runtime for runtime in runtimes if accepts(runtime.version)), None)
