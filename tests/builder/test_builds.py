"""Build each sample app with the real slugbuilder, start it with the slug runner, and ask it over HTTP.

Python, static and custom-buildpack builds run on both storages (local directory and SeaweedFS S3);
the rest run on local storage to keep the suite fast.
"""

from __future__ import annotations

import io
import queue
import secrets
import shutil
import subprocess
import tarfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from builder import job
from core.config import StorageSettings
from core.storage import storage_for
from tests.builder.conftest import APPS, TEST_BUILDPACKS, Build, Builder, app_files, python_version, tarball


@pytest.fixture(scope="module", params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> StorageSettings:
    if request.param == "local":
        return StorageSettings(type="local", root=tmp_path_factory.mktemp("storage"))
    return replace(request.getfixturevalue("seaweedfs"), aws_bucket=f"builds-{secrets.token_hex(4)}")


@pytest.fixture(scope="module")
def python_builds(storage: StorageSettings, offline_pip: dict[str, str]) -> tuple[Build, Build]:
    """The Python sample built twice with the same cache: the second build should reuse it."""
    source = {**app_files("python_web"), "runtime.txt": f"python-{python_version()}\n"}
    builder = Builder(storage)
    first = builder.build(source, offline_pip)
    second = builder.build(source, offline_pip)
    return first, second


@pytest.fixture
def local_builder(tmp_path: Path) -> Builder:
    return Builder(StorageSettings(type="local", root=tmp_path / "storage"))


def slug_names(build: Build) -> set[str]:
    with storage_for(build.storage).open_read(build.slug_key) as body:
        with tarfile.open(fileobj=io.BytesIO(body.read()), mode="r:gz") as tar:
            return set(tar.getnames())


def assert_succeeded(build: Build) -> None:
    assert build.status == 0, build.output
    assert "Traceback" not in build.output


def test_python_app_builds_and_answers(python_builds, run_slug) -> None:
    first, _ = python_builds
    assert_succeeded(first)
    assert "-----> Python app detected" in first.lines
    assert f"-----> Using Python {python_version()} (from runtime.txt)" in first.lines
    assert any(line.startswith("-----> Installing requirements with pip") for line in first.lines)
    assert any(line.startswith("       ") and "teresa-test-greeting" in line for line in first.lines), first.output
    assert first.lines[-2:] == ["-----> Discovering process types", "       Procfile declares types -> web"]
    app = run_slug(first, env={"WHO": "Teresa"})  # unpacked elsewhere than it was built: relocatable
    assert app.get("/") == "Hello, Teresa, from greeting 1.0"


def test_second_python_build_reuses_the_cache(python_builds, run_slug) -> None:
    first, second = python_builds
    assert_succeeded(second)
    assert "-----> Requirements unchanged since the last build; skipping installation" in second.lines
    assert not any("Installing requirements" in line for line in second.lines)
    assert second.slug_key != first.slug_key
    assert run_slug(second).get("/") == "Hello, python, from greeting 1.0"


def test_pyproject_app_installs_its_project_dependencies(local_builder: Builder, offline_pip, run_slug) -> None:
    files = app_files("python_web")
    del files["requirements.txt"]
    files["pyproject.toml"] = '[project]\nname = "web"\nversion = "1"\ndependencies = ["teresa-test-greeting==1.0"]\n'
    build = local_builder.build(files, offline_pip)
    assert_succeeded(build)
    # no version asked for: the newest of the stack's interpreters, never the python3 on PATH
    assert any(line.startswith("-----> Using Python ") and "the stack's newest" in line for line in build.lines), build.output
    assert "-----> Installing requirements with pip from pyproject.toml" in build.lines
    assert run_slug(build).get("/") == "Hello, python, from greeting 1.0"


def test_static_site_is_served(storage: StorageSettings, run_slug) -> None:
    build = Builder(storage).build(APPS / "static_site")
    assert_succeeded(build)
    assert "-----> Static site app detected" in build.lines
    assert build.lines[-3:] == [
        "-----> Discovering process types",
        "       Procfile declares types -> web",
        "       Default types for buildpack -> web",
    ]
    app = run_slug(build)
    assert "Hello from a static site" in app.get("/")
    assert app.get("/css/site.css").strip() == "h1 { color: teal; }"


def test_custom_buildpack_from_a_local_directory(storage: StorageSettings, run_slug) -> None:
    build = Builder(storage).build(
        APPS / "custom_buildpack", {"GREETING_NAME": "Ada"}, BUILDPACK_URL=str(TEST_BUILDPACKS / "hello")
    )
    assert_succeeded(build)
    assert "-----> Hello app detected" in build.lines
    assert "-----> Compiling with the hello buildpack" in build.lines
    assert "       wrote bin/hello_server.py" in build.lines
    assert "       Default types for buildpack -> web" in build.lines
    # the env dir carried the config var; .profile.d carries the release's config_vars
    assert run_slug(build).get("/") == "Hello from a custom buildpack for\nAda / release config var"


def test_custom_buildpack_from_a_git_url_with_a_ref(local_builder: Builder, tmp_path: Path, run_slug) -> None:
    repo = tmp_path / "hello-buildpack"
    shutil.copytree(TEST_BUILDPACKS / "hello", repo)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "v1"], ["tag", "v1"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    (repo / "bin" / "compile").write_text("#!/bin/sh\necho 'a later commit that must not be used'\nexit 1\n")
    subprocess.run([*git, "commit", "-qam", "broken"], check=True, capture_output=True)
    # set as a config var, as with `config:set BUILDPACK_URL=...`
    build = local_builder.build(APPS / "custom_buildpack", {"BUILDPACK_URL": f"file://{repo}#v1"})
    assert_succeeded(build)
    assert f"-----> Fetching buildpack file://{repo}#v1" in build.lines
    assert "Hello from a custom buildpack" in run_slug(build).get("/")


def test_node_app_without_procfile_runs_npm_start(local_builder: Builder, run_slug) -> None:
    if not shutil.which("npm"):
        pytest.skip("npm is not installed on this machine")
    build = local_builder.build(APPS / "node_web")
    assert_succeeded(build)
    assert "-----> Node.js app detected" in build.lines
    assert "-----> Installing dependencies with npm install (no lockfile)" in build.lines
    assert "       Default types for buildpack -> web" in build.lines
    assert run_slug(build).get("/").startswith("Hello from node v")


def test_node_dependencies_are_cached_between_builds(local_builder: Builder, run_slug) -> None:
    if not shutil.which("npm"):
        pytest.skip("npm is not installed on this machine")
    first = local_builder.build(APPS / "node_local_dep")
    second = local_builder.build(APPS / "node_local_dep")
    assert_succeeded(first)
    assert "-----> Installing dependencies with npm install (no lockfile)" in first.lines
    assert_succeeded(second)
    assert "-----> Dependencies unchanged since the last build; skipping installation" in second.lines
    assert run_slug(second).get("/") == "HELLO FROM A NODE DEPENDENCY!"


def test_procfile_only_app_runs_its_commands(local_builder: Builder, run_slug) -> None:
    build = local_builder.build(APPS / "procfile_only")
    assert_succeeded(build)
    assert "-----> Procfile app detected" in build.lines
    assert run_slug(build).get("/hello.txt") == "Hello from a Procfile-only app\n"


@pytest.mark.xdist_group("go")
@pytest.mark.timeout(330)  # the build's own limit is 300 s: the first Go build compiles the standard library
@pytest.mark.parametrize(("app", "greeting"), [("go_modules", "Hello from go modules"), ("go_govendor", "Hello from govendor")])
def test_go_app_builds_a_binary(go_builder: Builder, run_slug, app: str, greeting: str) -> None:
    if not shutil.which("go"):
        pytest.skip("Go is not installed on this machine (CI installs golang-go)")
    build = go_builder.build(APPS / app, timeout=300)
    assert_succeeded(build)
    assert "-----> Go app detected" in build.lines
    assert any(line.startswith("       Installed bin/") for line in build.lines)
    assert run_slug(build).get("/") == greeting


def test_failing_build_exits_non_zero_naming_the_failure(local_builder: Builder, offline_pip) -> None:
    source = {"requirements.txt": "teresa-no-such-package==9.9\n", "app.py": "print('hi')\n"}
    build = local_builder.build(source, offline_pip)
    assert build.status != 0
    assert "Traceback" not in build.output
    assert "No matching distribution found for teresa-no-such-package" in build.output
    assert build.lines[-2].startswith(" !     pip could not install the requirements")
    assert build.lines[-1] == (
        " !     Build failed: The python buildpack failed to compile the app (bin/compile exited with status 1)."
    )
    assert not storage_for(build.storage).exists(build.slug_key)


def test_slug_leaves_out_git_and_slugignore_matches(local_builder: Builder) -> None:
    source = {
        "Procfile": "web: python3 -m http.server $PORT\n",
        ".slugignore": "*.log\n/docs\ntests/\n",
        ".git/HEAD": "ref: refs/heads/main\n",
        "app.log": "noise",
        "docs/guide.md": "# docs",
        "src/tests/test_x.py": "",
        "src/keep.py": "",
    }
    build = local_builder.build(source)
    assert_succeeded(build)
    assert "-----> Removed 3 paths listed in .slugignore" in build.lines
    names = slug_names(build)
    assert {"Procfile", "src/keep.py", ".slugignore"} <= names
    assert not names & {".git", ".git/HEAD", "app.log", "docs", "docs/guide.md", "src/tests", "src/tests/test_x.py"}


def test_app_procfile_overrides_buildpack_defaults(local_builder: Builder) -> None:
    source = {"index.html": "<p>hi</p>", "Procfile": "worker: sleep 1\nweb: python3 -m http.server $PORT\n"}
    build = local_builder.build(source)
    assert_succeeded(build)
    assert "       Procfile declares types -> worker, web" in build.lines
    assert not any("Default types" in line for line in build.lines)
    with storage_for(build.storage).open_read(build.slug_key) as body:
        with tarfile.open(fileobj=io.BytesIO(body.read()), mode="r:gz") as tar:
            procfile = tar.extractfile("Procfile").read().decode()
    assert procfile == "worker: sleep 1\nweb: python3 -m http.server $PORT\n"


def test_output_is_streamed_while_the_build_runs(local_builder: Builder, tmp_path: Path) -> None:
    go_ahead = tmp_path / "go-ahead"
    proc = local_builder.spawn(
        tarball({"README": "x"}), {"GO_AHEAD_FILE": str(go_ahead)}, BUILDPACK_URL=str(TEST_BUILDPACKS / "wait_for_file")
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(raw.decode().rstrip("\n")) for raw in proc.stdout], daemon=True)
    reader.start()
    try:
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while "-----> waiting for the go-ahead" not in seen:
            seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
        assert proc.poll() is None, "the line must arrive while the build is still running"
        assert "       got the go-ahead" not in seen
        go_ahead.touch()
        assert proc.wait(timeout=30) == 0
        reader.join(timeout=10)
    finally:
        proc.kill()
    seen.extend(lines.queue)
    assert "       got the go-ahead" in seen
    assert seen[-1] == "       Procfile declares types -> (none)"


def test_build_timeout_kills_the_buildpack(local_builder: Builder, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    build = local_builder.build(
        tarball({"README": "x"}), {"PID_FILE": str(pid_file)},
        BUILDPACK_URL=str(TEST_BUILDPACKS / "sleeper"), TERESA_BUILD_TIMEOUT="2",
    )  # fmt: skip
    assert build.status == job.TIMED_OUT  # runtimes tell a timeout from a failure by the exit status
    assert "-----> sleeping" in build.lines
    assert build.lines[-1] == " !     Build timed out after 2 seconds; make it faster or raise TERESA_BUILD_TIMEOUT."
    for pid in map(int, pid_file.read_text().split()):
        assert _gone(pid), f"process {pid} of the build survived the timeout"


def _gone(pid: int, deadline: float = 10.0) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_stopping_the_slugbuilder_stops_the_build(local_builder: Builder, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    proc = local_builder.spawn(
        tarball({"README": "x"}), {"PID_FILE": str(pid_file)}, BUILDPACK_URL=str(TEST_BUILDPACKS / "sleeper")
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while proc.stdout.readline() != b"-----> sleeping\n":
            assert time.monotonic() < deadline and proc.poll() is None
        proc.terminate()
        output = proc.stdout.read().decode()
        assert proc.wait(timeout=10) == 128 + 15
    finally:
        proc.kill()
    assert output.splitlines()[-1] == " !     Build stopped: the slugbuilder was asked to stop before the build finished."
    for pid in map(int, pid_file.read_text().split()):
        assert _gone(pid), f"process {pid} of the build survived"
