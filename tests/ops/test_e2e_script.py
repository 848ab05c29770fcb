"""hack/e2e (the end-to-end flow on a kind or k3d cluster) cannot run here (no Docker); shellcheck checks it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.fixtures.teresa import REPO

SCRIPT = REPO / "hack" / "e2e"


def test_hack_e2e_is_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (Debian: apt-get install shellcheck)")
    result = subprocess.run([shellcheck, "--shell=bash", "--severity=style", str(SCRIPT)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hack_e2e_is_executable_and_documented() -> None:
    assert SCRIPT.stat().st_mode & 0o111
    assert "hack/e2e" in (REPO / "README.md").read_text()
