"""The built-in buildpacks as shipped: complete, executable, and documented in the order they are tried."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.buildpack import BUILTIN_DIR, BUILTIN_ORDER

DOCS = Path(__file__).resolve().parents[2] / "docs" / "buildpacks.md"


@pytest.mark.parametrize("name", BUILTIN_ORDER)
def test_builtin_buildpack_scripts_are_executable(name: str) -> None:
    for script in ("detect", "compile", "release"):
        path = BUILTIN_DIR / name / "bin" / script
        assert path.is_file() and os.access(path, os.X_OK), f"{path} is missing or not executable"


def test_documented_detection_order_matches_the_code() -> None:
    text = DOCS.read_text()
    positions = [text.index(f"1. **{BUILTIN_ORDER[0]}**")] + [
        text.index(f"{i}. **{name}**") for i, name in enumerate(BUILTIN_ORDER[1:], start=2)
    ]
    assert positions == sorted(positions)
