"""The slug runner against slugs made here (no build needed): unpacking, profile.d, exec semantics, errors."""

from __future__ import annotations

import io
import os
import signal
import subprocess
from pathlib import Path

import pytest

from builder.slugmeta import slug_digest
from core.config import StorageSettings
from core.storage import storage_for
from tests.builder.conftest import script, tarball

SLUG_KEY = "apps/demo/builds/b1/slug.tgz"
PROCFILE = """\
web: python3 -c "import os, signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: (print('got TERM', os.getpid(), flush=True), sys.exit(0))); print('ready', os.getpid(), flush=True); time.sleep(60)"
env: echo "$GREETING from $HOME on port ${PORT:-none}"
compound: cd sub && pwd && echo "$FROM_PROFILE"
"""


@pytest.fixture
def storage(tmp_path: Path) -> StorageSettings:
    settings = StorageSettings(type="local", root=tmp_path / "storage")
    slug = tarball({
        "Procfile": PROCFILE,
        ".profile.d/greeting.sh": 'export GREETING="hello"\n',
        ".profile.d/zz-later.sh": 'export FROM_PROFILE="$GREETING again"\n',
        "sub/file.txt": "x",
    })  # fmt: skip
    storage_for(settings).put_stream(SLUG_KEY, io.BytesIO(slug))
    return settings


def runner_env(storage: StorageSettings, app_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERESA")}
    env.update(TERESA_SLUG_URL=storage_for(storage).grant(SLUG_KEY, write=False, seconds=600),
               TERESA_APP_DIR=str(app_dir))
    env.update(extra)
    return env


def slugrunner(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*script("teresa-slugrunner"), *args], env=env, capture_output=True, text=True, timeout=30)


def test_start_sources_profile_d_and_sets_home_and_port(storage: StorageSettings, tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    result = slugrunner("start", "env", env=runner_env(storage, app_dir, PORT="5123"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"hello from {app_dir} on port 5123\n"


def test_compound_commands_run_in_the_app_dir(storage: StorageSettings, tmp_path: Path) -> None:
    result = slugrunner("start", "compound", env=runner_env(storage, tmp_path / "app"))
    assert result.stdout.splitlines() == [str(tmp_path / "app" / "sub"), "hello again"]


def test_app_keeps_the_started_pid_and_receives_signals(storage: StorageSettings, tmp_path: Path) -> None:
    proc = subprocess.Popen([*script("teresa-slugrunner"), "start", "web"], env=runner_env(storage, tmp_path / "app"),
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"ready {proc.pid}\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline() == f"got TERM {proc.pid}\n"
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()


def test_unknown_type_lists_the_types_there_are(storage: StorageSettings, tmp_path: Path) -> None:
    result = slugrunner("start", "worker", env=runner_env(storage, tmp_path / "app"))
    assert result.returncode == 1
    assert result.stderr == (
        "teresa-slugrunner: Process type 'worker' is not in the Procfile; the types are: web, env, compound.\n"
    )


def test_fetch_then_start_from_the_unpacked_directory(storage: StorageSettings, tmp_path: Path) -> None:
    app_dir = tmp_path / "shared-volume"
    fetched = slugrunner("fetch", env=runner_env(storage, app_dir))
    assert fetched.returncode == 0, fetched.stderr
    assert (app_dir / "Procfile").read_text() == PROCFILE
    env = runner_env(storage, app_dir)
    del env["TERESA_SLUG_URL"]
    result = slugrunner("start", "env", env=env)
    assert result.stdout == f"hello from {app_dir} on port none\n"


def test_a_slug_changed_in_storage_since_its_build_is_not_unpacked(storage: StorageSettings, tmp_path: Path) -> None:
    stored = storage_for(storage)
    built = slug_digest(stored, SLUG_KEY)  # what the controller records when the build ends
    fetched = slugrunner("fetch", env=runner_env(storage, tmp_path / "checked", TERESA_SLUG_SHA256=built))
    assert fetched.returncode == 0, fetched.stderr
    stored.put_stream(SLUG_KEY, io.BytesIO(tarball({"Procfile": "web: echo swapped\n"})))  # a build's stale PUT grant
    changed = slugrunner("start", "web", env=runner_env(storage, tmp_path / "app", TERESA_SLUG_SHA256=built))
    assert (changed.returncode, changed.stdout) == (1, "")
    assert changed.stderr == ("teresa-slugrunner: The slug was changed in storage since its build (its SHA-256 digest "
                              "is not the one recorded then), so it is not run; push again to rebuild it.\n")
    assert not (tmp_path / "app" / "Procfile").exists()


def test_exec_runs_a_command_in_the_slug_environment(storage: StorageSettings, tmp_path: Path) -> None:
    env = runner_env(storage, tmp_path / "app", APP_SETTING="42")
    result = slugrunner("exec", "--", "sh", "-c", 'echo "$GREETING $APP_SETTING $PWD"; env', env=env)
    assert result.returncode == 0, result.stderr
    first, *environment = result.stdout.splitlines()
    assert first == f"hello 42 {tmp_path / 'app'}"
    assert not [line for line in environment if line.startswith(("TERESAFILESTORAGE_", "TERESA_SLUG_URL"))]


def test_exec_passes_the_exit_status_through(storage: StorageSettings, tmp_path: Path) -> None:
    result = slugrunner("exec", "--", "sh", "-c", "exit 7", env=runner_env(storage, tmp_path / "app"))
    assert result.returncode == 7


def test_missing_slug_is_one_sentence(storage: StorageSettings, tmp_path: Path) -> None:
    missing = storage_for(storage).grant("apps/demo/builds/nope/slug.tgz", write=False, seconds=600)
    result = slugrunner("start", "web", env=runner_env(storage, tmp_path / "app", TERESA_SLUG_URL=missing))
    assert result.returncode == 1
    assert result.stderr == f"teresa-slugrunner: Nothing is stored at {missing}.\n"


def test_no_slug_and_no_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERESA")}
    env["TERESA_APP_DIR"] = str(tmp_path / "missing")
    result = slugrunner("start", "web", env=env)
    assert result.returncode == 1
    assert "does not exist; set TERESA_SLUG_URL or TERESA_APP_DIR to an unpacked slug." in result.stderr
