"""The version readers the buildpacks use: npm semver ranges (engines.node) and Python's requires-python.

They run on the stack's python3 as buildpack code, so they are imported from the buildpacks' own
lib directories here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from builder.buildpack import BUILTIN_DIR

for lib in (BUILTIN_DIR / "_lib", BUILTIN_DIR / "nodejs" / "lib", BUILTIN_DIR / "python" / "lib"):
    if str(lib) not in sys.path:
        sys.path.append(str(lib))

import python_version  # noqa: E402
import semver_range  # noqa: E402


@pytest.mark.parametrize(
    ("spec", "version", "accepted"),
    [
        ("20.x", (20, 11, 1), True), ("20.x", (21, 0, 0), False), ("20", (20, 5, 0), True), ("*", (1, 2, 3), True),
        (">=18", (22, 1, 0), True), (">= 16 < 21", (20, 0, 0), True), (">20", (20, 5, 0), False), (">20.1.0", (20, 1, 1), True),
        ("<=20", (20, 9, 9), True), ("<20", (20, 0, 0), False), ("v20.11.1", (20, 11, 1), True), ("=20.11.1", (20, 11, 2), False),
        ("^18.17 || >=20", (19, 0, 0), False), ("^18.17 || >=20", (18, 18, 0), True), ("^0.2.3", (0, 3, 0), False),
        ("~20.10", (20, 11, 0), False), ("~20.10", (20, 10, 5), True), ("~20", (20, 99, 0), True),
        ("18 - 20", (20, 99, 0), True), ("18 - 20", (21, 0, 0), False), ("18.2 - 20.1.4", (20, 1, 5), False),
    ],
)  # fmt: skip
def test_npm_semver_ranges(spec: str, version: tuple[int, int, int], accepted: bool) -> None:
    assert semver_range.accepts(spec, version) is accepted


def test_a_range_npm_would_not_read_is_refused() -> None:
    with pytest.raises(semver_range.RangeError):
        semver_range.accepts("twenty", (20, 0, 0))


@pytest.mark.parametrize(
    ("spec", "version", "accepted"),
    [
        (">=3.11", (3, 13, 0), True), (">=3.11,<3.13", (3, 13, 0), False), (">=3.11,<3.13", (3, 12, 9), True),
        ("~=3.11", (3, 13, 1), True), ("~=3.11", (4, 0, 0), False), ("~=3.11.2", (3, 11, 1), False), ("~=3.11.2", (3, 12, 0), False),
        ("==3.12.*", (3, 12, 4), True), ("==3.12.*", (3, 13, 0), False), ("!=3.12.*", (3, 12, 4), False), ("==3.12", (3, 12, 0), True),
        (">3.12", (3, 12, 1), True), ("<=3.12", (3, 12, 1), False),
    ],
)  # fmt: skip
def test_requires_python(tmp_path: Path, spec: str, version: tuple[int, int, int], accepted: bool) -> None:
    (tmp_path / "pyproject.toml").write_text(f'[project]\nrequires-python = "{spec}"\n')
    request = python_version.from_requires_python(tmp_path / "pyproject.toml")
    assert request is not None and request.accepts(version) is accepted
