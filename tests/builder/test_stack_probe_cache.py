"""The stack's runtimes are probed once per executable: later builds read the version from the build cache."""

from __future__ import annotations

import sys
from pathlib import Path

from builder.buildpack import BUILTIN_DIR

if str(BUILTIN_DIR / "_lib") not in sys.path:
    sys.path.append(str(BUILTIN_DIR / "_lib"))

import stack  # noqa: E402


def fake_runtime(path: Path, version: str, runs: Path) -> None:
    """An executable that prints its version and counts its runs, as a real interpreter's probe would."""
    path.write_text(f"#!/bin/sh\necho run >> {runs}\necho {version}\n")
    path.chmod(0o755)


def test_a_probed_version_is_reused_until_the_executable_changes(tmp_path: Path) -> None:
    runs, cache = tmp_path / "runs", tmp_path / "cache" / "python" / "interpreters.json"
    runtime = tmp_path / "python3"
    fake_runtime(runtime, "3.12.4", runs)

    def discover() -> list[stack.Runtime]:
        return stack.discover(str(runtime), [], ["--version"], cache=str(cache))

    assert discover() == [stack.Runtime((3, 12, 4), str(runtime))]
    assert discover() == [stack.Runtime((3, 12, 4), str(runtime))]
    assert runs.read_text().count("run") == 1  # the second build asked the cache, not the executable
    fake_runtime(runtime, "3.13.10", runs)  # upgraded in place: a new size, a new mtime
    assert discover() == [stack.Runtime((3, 13, 10), str(runtime))]
    assert runs.read_text().count("run") == 2


def test_an_unreadable_cache_means_probing_again(tmp_path: Path) -> None:
    runs, cache = tmp_path / "runs", tmp_path / "interpreters.json"
    runtime = tmp_path / "python3"
    fake_runtime(runtime, "3.11.9", runs)
    cache.write_text("{not json")
    assert stack.discover(str(runtime), [], ["--version"], cache=str(cache)) == [stack.Runtime((3, 11, 9), str(runtime))]
    assert runs.read_text().count("run") == 1
