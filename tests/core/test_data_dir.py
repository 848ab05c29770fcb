"""The local `teresa` command never makes a fresh, empty data directory behind the operator's back."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.fixtures.teresa import BIN, base_env, wait_for


def teresa(cwd: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = base_env(cwd / "unused", **env)
    del environment["TERESA_DATA_DIR"]  # where it looks by default: .teresa in the current directory
    environment.update(env)
    return subprocess.run([str(BIN / "teresa"), *argv], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=60)


def test_a_command_without_a_data_directory_names_it_and_how_to_point_elsewhere(tmp_path: Path) -> None:
    result = teresa(tmp_path, "apps:list")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"error: there is no Teresa data directory at {tmp_path / '.teresa'}; run teresa where "
                             "`teresa serve` runs, or point TERESA_DATA_DIR at its data directory (teresa serve "
                             "creates one on first start).\n")
    elsewhere = teresa(tmp_path, "users:list", TERESA_DATA_DIR=str(tmp_path / "srv"))
    assert str(tmp_path / "srv") in elsewhere.stderr
    assert teresa(tmp_path, "help").returncode == 0 and teresa(tmp_path, "version").returncode == 0
    assert list(tmp_path.iterdir()) == []


def test_serve_creates_the_data_directory_on_its_first_start(tmp_path: Path) -> None:
    environment = base_env(tmp_path / "unused")
    del environment["TERESA_DATA_DIR"]
    with subprocess.Popen([str(BIN / "teresa"), "serve"], cwd=tmp_path, env=environment, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True) as serve:
        try:
            wait_for(lambda: (tmp_path / ".teresa" / "control.sock").exists() or serve.poll() is not None, timeout=60)
            assert serve.poll() is None, serve.stderr.read() if serve.stderr else ""
            result = teresa(tmp_path, "teams:create", "ops")
            assert (result.returncode, result.stdout) == (0, "Team ops created.\n"), result.stderr
        finally:
            serve.terminate()
            serve.wait(30)
