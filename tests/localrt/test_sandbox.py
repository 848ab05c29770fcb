"""The sandbox an app's processes run in as root: what it shows, hides and lets them write."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.runtime.local.sandbox import SandboxPlan, command, passable

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandboxes are made as root")
NOBODY = 65534


def layout(tmp_path: Path) -> dict[str, Path]:
    """A closed home holding a runtime and a secret, a data directory, and two apps' directories."""
    home = tmp_path / "home"
    runtime = home / "runtime"
    (runtime / "bin").mkdir(parents=True)
    (runtime / "bin" / "python3").write_text("#!/bin/sh\necho runtime ran\n")
    os.chmod(runtime / "bin" / "python3", 0o755)
    os.chmod(runtime, 0o755)
    os.chmod(runtime / "bin", 0o755)
    os.chown(runtime, NOBODY, NOBODY)  # its owner could write there, but not in the sandbox
    (home / "secret").write_text("root's\n")
    os.chmod(home, 0o700)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "teresa.sqlite").write_text("state\n")
    apps = tmp_path / "apps"
    for app in ("a", "b"):
        (apps / app).mkdir(parents=True)
        os.chown(apps / app, NOBODY, NOBODY)
    return {"home": home, "runtime": runtime, "data": data, "apps": apps}


def run(plan: SandboxPlan, app: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(plan.for_app(app), NOBODY, NOBODY, ["sh", "-c", script]), cwd="/",
                          capture_output=True, text=True, timeout=60)


def test_a_closed_runtime_shows_read_only_the_state_is_absent_and_only_its_own_app_dir_is_there(tmp_path: Path) -> None:
    paths = layout(tmp_path)
    assert not passable(paths["runtime"])
    env = {"TERESA_STACK_PYTHON_DIRS": str(paths["runtime"] / "bin" / "python3"), "TERESA_STACK_NODE_DIRS": ""}
    plan = SandboxPlan.make(paths["apps"], [paths["data"]], env)
    home, data, apps = paths["home"], paths["data"], paths["apps"]
    result = run(plan, "a", f"""
        {paths['runtime']}/bin/python3
        for p in {data}/teresa.sqlite {home}/secret {apps}/b {apps}/a; do test -e $p && echo "seen: $p"; done
        touch {paths['runtime']}/x 2>&1 | grep -o 'Read-only file system'
        touch {apps}/a/mine && echo wrote
        {sys.executable} -c 'import builder.slugrunner; print("teresa runs")'
        id -u""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:-1] == ["runtime ran", f"seen: {apps}/a", "Read-only file system",
                                               "wrote", "teresa runs", str(NOBODY)], result.stdout + result.stderr
    assert (apps / "a" / "mine").exists()
    assert (home / "secret").exists() and (data / "teresa.sqlite").exists()  # nothing changed outside


def test_nothing_of_the_sandbox_outlives_its_process(tmp_path: Path) -> None:
    paths = layout(tmp_path)
    plan = SandboxPlan.make(paths["apps"], [paths["data"]], {"TERESA_STACK_PYTHON_DIRS": "", "TERESA_STACK_NODE_DIRS": ""})
    mounts = Path("/proc/self/mountinfo").read_text()
    assert run(plan, "b", f"ls -A {paths['apps']}/b; test -e {paths['apps']}/a || echo gone").stdout == "gone\n"
    assert Path("/proc/self/mountinfo").read_text() == mounts
    assert sorted(p.name for p in paths["apps"].iterdir()) == ["a", "b"]


def test_a_failure_to_make_it_is_one_sentence(tmp_path: Path) -> None:
    result = subprocess.run(command([("ro", str(tmp_path / "missing"))], NOBODY, NOBODY, ["true"]), cwd="/",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 125
    assert result.stderr.startswith("The app's sandbox could not be made: ") and "Traceback" not in result.stderr
