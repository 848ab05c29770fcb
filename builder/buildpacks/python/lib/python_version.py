"""Which of the stack's Python interpreters builds and runs the app.

Precedence, as in Heroku's Python buildpack, then Teresa's additions:
1. `runtime.txt` (deprecated on Heroku, still first there): `python-3.12` or `python-3.12.1`;
2. `.python-version`: `3.12` or `3.12.1` (one version; `#` comment lines allowed);
3. `Pipfile.lock`'s `python_full_version`, then `python_version` (Pipenv apps);
4. `requires-python` of pyproject.toml's `[project]` (the newest interpreter it allows);
5. otherwise the newest interpreter the stack has.
The interpreters are the stack's list (TERESA_STACK_PYTHONS plus its install directories).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import buildpack_kit as kit
import stack

SETTING, DIRS_SETTING = stack.SETTINGS["python"]  # the list, and what replaces stack.INSTALL_DIRS
INSTALL_DIRS = stack.INSTALL_DIRS["python"]
NUMBERS = r"(\d+)\.(\d+)(?:\.(\d+))?"
CLAUSE = re.compile(r"(~=|===|==|!=|<=|>=|<|>)\s*(\d+(?:\.\d+)*)(\.\*)?")
Version = tuple[int, int, int]
# How to ask for another version, by where the request came from: (the fix, an example).
FIXES = {
    "runtime.txt": ("change runtime.txt to one of them", "python-{}"),
    ".python-version": ("change .python-version to one of them", "{}"),
    "Pipfile.lock": ("change the Pipfile's python_version to one of them and run `pipenv lock`", "{}"),
    "requires-python": ("change requires-python in pyproject.toml to allow one of them", ">={}"),
}


@dataclass(frozen=True)
class Request:
    accepts: Callable[[Version], bool]
    wanted: str  # how the app wrote it, e.g. "3.12"
    origin: str  # the file it came from, e.g. ".python-version"


def interpreters(cache: Path | None = None) -> list[stack.Runtime]:
    patterns = stack.setting_paths(os.environ[DIRS_SETTING]) if DIRS_SETTING in os.environ else INSTALL_DIRS
    probe = ["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"]
    return stack.discover(os.environ.get(SETTING, ""), patterns, probe, name=r"python3(\.\d+)?",
                          cache=str(cache / "python" / "interpreters.json") if cache else None)


def version_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        kit.fail(f"{path.name} is not UTF-8 text; save it as UTF-8 without a BOM.")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def prefix(text: str, origin: str) -> Request:
    parts = tuple(int(part) for part in text.split("."))
    return Request(lambda version: version[: len(parts)] == parts, text, origin)


def from_runtime_txt(path: Path) -> Request:
    lines = version_lines(path)
    match = re.fullmatch(r"python-" + NUMBERS, lines[0]) if len(lines) == 1 else None
    if not match:
        kit.fail("runtime.txt must hold one line like python-3.12 (runtime.txt is deprecated: prefer a .python-version file holding 3.12).")
    return prefix(lines[0].removeprefix("python-"), "runtime.txt")


def from_python_version(path: Path) -> Request:
    lines = version_lines(path)
    if len(lines) != 1:
        found = "no version" if not lines else f"{len(lines)} versions"
        kit.fail(f".python-version holds {found}; it must hold exactly one, like 3.12.")
    if not re.fullmatch(NUMBERS, lines[0]):
        kit.fail(f".python-version says {lines[0][:40]!r}; write a CPython version like 3.12 (no 'python-' prefix, no pyenv names).")
    return prefix(lines[0], ".python-version")


def from_pipfile_lock(path: Path) -> Request | None:
    try:
        requires = json.loads(path.read_text()).get("_meta", {}).get("requires", {})
    except (ValueError, AttributeError, UnicodeDecodeError):
        kit.fail("Pipfile.lock is not valid JSON; run `pipenv lock` to regenerate it.")
    wanted = requires.get("python_full_version") or requires.get("python_version")
    if isinstance(wanted, str) and re.fullmatch(NUMBERS, wanted):
        return prefix(wanted, "Pipfile.lock")
    return None


def from_requires_python(path: Path) -> Request | None:
    try:
        project = tomllib.loads(path.read_text()).get("project", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        kit.fail(f"pyproject.toml is not valid TOML ({exc}); fix it.")
    spec = project.get("requires-python") if isinstance(project, dict) else None
    if not isinstance(spec, str) or not spec.strip():
        return None
    clauses = [clause.strip() for clause in spec.split(",") if clause.strip()]
    parsed = [CLAUSE.fullmatch(clause) for clause in clauses]
    if not all(parsed):
        kit.fail(f"requires-python = {spec!r} in pyproject.toml is not a version specifier Teresa reads; write it like \">=3.11\".")
    return Request(lambda version: all(_clause_accepts(m, version) for m in parsed if m), spec.strip(), "requires-python")


def _clause_accepts(match: re.Match, version: Version) -> bool:
    op, numbers, star = match.groups()
    wanted = tuple(int(part) for part in numbers.split("."))
    if star or op == "~=":
        head = wanted if star else wanted[:-1]
        same = version[: len(head)] == head
        if op == "~=":
            return same and version >= _pad(wanted)
        return same if op == "==" else not same
    padded = _pad(wanted)
    return {"==": version == padded, "===": version == padded, "!=": version != padded, "<=": version <= padded,
            ">=": version >= padded, "<": version < padded, ">": version > padded}[op]  # fmt: skip


def _pad(parts: tuple[int, ...]) -> Version:
    return (tuple(parts) + (0, 0, 0))[:3]  # type: ignore[return-value]


def requested(build: Path) -> Request | None:
    if (build / "runtime.txt").is_file():
        return from_runtime_txt(build / "runtime.txt")
    if (build / ".python-version").is_file():
        return from_python_version(build / ".python-version")
    if (build / "Pipfile.lock").is_file() and (request := from_pipfile_lock(build / "Pipfile.lock")):
        return request
    if (build / "pyproject.toml").is_file():
        return from_requires_python(build / "pyproject.toml")
    return None


def choose(build: Path, cache: Path | None = None) -> stack.Runtime:
    available = interpreters(cache)
    if not available:
        kit.fail(f"This stack lists no Python interpreters; set {SETTING} or install CPython under /opt/python/VERSION.")
    request = requested(build)
    if request is None:
        chosen = available[0]
        kit.step(f"Using Python {chosen.dotted}, the stack's newest (pin a version in .python-version, like {chosen.version[0]}.{chosen.version[1]})")
        return chosen
    chosen = stack.newest_matching(available, request.accepts)
    if chosen is None:
        minor = "%d.%d" % available[0].version[:2]
        fix, example = FIXES[request.origin]
        kit.fail(f"{request.origin} asks for Python {request.wanted} but this stack has Python {stack.listing(available)}; "
                 f"{fix}, like {example.format(minor)}.")  # fmt: skip
    kit.step(f"Using Python {chosen.dotted} (from {request.origin})")
    return chosen
