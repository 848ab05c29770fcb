"""The Python buildpack's conventions, each with a real build (PyPI reachable) and, where it builds, a request.

Apps: tests/builder/apps/python_django (shaped like Heroku's Django getting-started app),
python_locked/* (one app, locked by uv, Poetry 1 and 2 project styles, and Pipenv),
python_requirements (`-r`, an extra, hashes) and python_setup_py, the last two with python_locked's web app.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.config import StorageSettings
from tests.builder.conftest import APPS, Build, Builder, app_files
from tests.builder.test_builds import assert_succeeded

LOCKED = APPS / "python_locked"


@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory) -> Builder:
    """One app for the module: later builds reuse the build cache of earlier ones, as pushes do."""
    return Builder(StorageSettings(type="local", root=tmp_path_factory.mktemp("storage")))


@pytest.fixture
def fresh(tmp_path: Path) -> Builder:
    return Builder(StorageSettings(type="local", root=tmp_path / "storage"))


def locked_app(installer: str) -> dict[str, bytes]:
    """The shared web app plus one installer's project and lock files."""
    return without_subdirs({**app_files("python_locked"), **app_files(f"python_locked/{installer}")})


def with_web_app(name: str) -> dict[str, bytes]:
    """A sample app's dependency files plus the shared web app of python_locked."""
    return {**without_subdirs(app_files("python_locked")), **app_files(name)}


def without_subdirs(files: dict[str, bytes]) -> dict[str, bytes]:
    return {name: data for name, data in files.items() if "/" not in name}


def failure(build: Build) -> str:
    assert build.status != 0, build.output
    assert "Traceback" not in build.output.split("-----> $ python")[0], build.output
    return build.lines[-2]


def test_django_getting_started_app_collects_static_files_and_serves(builder: Builder, run_slug) -> None:
    build = builder.build(APPS / "python_django", timeout=240)
    assert_succeeded(build)
    assert any(re.fullmatch(r"-----> Using Python 3\.12\.\d+ \(from \.python-version\)", line) for line in build.lines), build.output
    assert "-----> $ python manage.py collectstatic --noinput" in build.lines
    assert any(re.search(r"static files? copied", line) for line in build.lines), build.output
    app = run_slug(build)
    page = app.get("/")
    assert "Hello from Django on Python 3.12" in page
    hashed = re.search(r'href="(/static/hello/site\.[0-9a-f]{12}\.css)"', page)
    assert hashed, page  # the manifest collectstatic wrote is what the running app uses
    assert app.get(hashed[1]).strip() == "h1 { color: rebeccapurple; }"


def test_collectstatic_failure_fails_the_build_with_its_output(builder: Builder) -> None:
    files = {**app_files("python_django"), "hello/static/hello/site.css": "body { background: url('missing.png'); }\n"}
    build = builder.build(files, timeout=240)
    assert "missing.png" in build.output  # Django's own explanation, from the manifest storage
    assert failure(build).startswith(" !     Django's collectstatic failed (see its output above)")


def test_disable_collectstatic_skips_it(builder: Builder) -> None:
    files = {**app_files("python_django"), "hello/static/hello/site.css": "body { background: url('missing.png'); }\n"}
    build = builder.build(files, {"DISABLE_COLLECTSTATIC": "1"}, timeout=240)
    assert_succeeded(build)
    assert "-----> Skipping Django's collectstatic: DISABLE_COLLECTSTATIC is set" in build.lines
    assert not any("collectstatic --noinput" in line for line in build.lines)


def test_pre_and_post_compile_hooks_run_around_the_install(fresh: Builder, run_slug) -> None:
    files = {
        **locked_app("uv"), "requirements.txt": "six==1.16.0\n",
        "bin/pre_compile": "#!/bin/sh\necho \"pre_compile sees no six yet: $(python -c 'import six' 2>&1 | tail -1)\"\n",
        "bin/post_compile": "echo post_compile here\npython -c 'import six; print(\"six\", six.__version__)' > post_compile.txt\n",
    }
    del files["pyproject.toml"], files["uv.lock"]
    build = fresh.build(files)
    assert_succeeded(build)
    order = [line for line in build.lines if "hook" in line or "Installing requirements" in line]
    assert order == ["-----> Running bin/pre_compile hook", "-----> Installing requirements with pip from requirements.txt",
                     "-----> Running bin/post_compile hook"]  # fmt: skip
    assert "       pre_compile sees no six yet: ModuleNotFoundError: No module named 'six'" in build.lines
    assert "       post_compile here" in build.lines
    assert run_slug(build).get("/?six") == "python 3.12; six 1.16.0"


def test_failing_hook_fails_the_build(fresh: Builder) -> None:
    build = fresh.build({"requirements.txt": "", "bin/pre_compile": "#!/bin/sh\necho nope >&2\nexit 3\n"})
    assert "       nope" in build.lines
    assert failure(build) == " !     bin/pre_compile failed (see its output above); fix it or remove it."


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"runtime.txt": "# the version we test with\npython-3.12\n"}, r"3\.12\.\d+ \(from runtime\.txt\)"),
        ({"runtime.txt": "python-3.11\n", ".python-version": "3.12\n"}, r"3\.11\.\d+ \(from runtime\.txt\)"),
        ({".python-version": "# pinned\n3.12\n"}, r"3\.12\.\d+ \(from \.python-version\)"),
        ({"pyproject.toml": '[project]\nname = "x"\nversion = "1"\nrequires-python = ">=3.11,<3.13"\n'},
         r"3\.12\.\d+ \(from requires-python\)"),
    ],
    ids=["runtime.txt", "runtime.txt-beats-python-version", "python-version", "requires-python"],
)
def test_python_version_is_chosen_in_order_of_precedence(fresh: Builder, files: dict[str, str], expected: str) -> None:
    build = fresh.build({"requirements.txt": "", **files, "Procfile": "web: python -V\n"})
    assert_succeeded(build)
    assert any(re.fullmatch(r"-----> Using Python " + expected, line) for line in build.lines), build.output


def test_a_version_the_stack_lacks_is_one_sentence_naming_what_it_has(fresh: Builder) -> None:
    build = fresh.build({"requirements.txt": "", ".python-version": "3.4\n"})
    message = failure(build)
    assert re.fullmatch(r" !     \.python-version asks for Python 3\.4 but this stack has Python [0-9., and]+; "
                        r"change \.python-version to one of them, like 3\.\d+\.", message), message  # fmt: skip
    assert "3.12." in message


def test_requires_python_the_stack_cannot_meet(fresh: Builder) -> None:
    build = fresh.build({"pyproject.toml": '[project]\nname = "x"\nversion = "1"\nrequires-python = ">=3.99"\n'})
    assert re.fullmatch(r" !     requires-python asks for Python >=3\.99 but this stack has Python [0-9., and]+; "
                        r"change requires-python in pyproject\.toml to allow one of them, like >=3\.\d+\.", failure(build))  # fmt: skip


def test_the_stack_interpreters_are_the_configured_list(fresh: Builder, tmp_path: Path) -> None:
    """TERESA_STACK_PYTHONS lists interpreters; TERESA_STACK_PYTHON_DIRS replaces the install directories searched."""
    python312 = next(Path("/root/.pyenv/versions").glob("3.12.*/bin/python3"), None) or Path("/usr/local/bin/python3.12")
    if not python312.exists():
        pytest.skip("CPython 3.12 is not installed on this machine")
    env = {"TERESA_STACK_PYTHONS": f"3.12={python312}", "TERESA_STACK_PYTHON_DIRS": str(tmp_path / "none/*/python3")}
    build = fresh.build({"requirements.txt": "", "Procfile": "web: python -V\n"}, **env)
    assert_succeeded(build)
    assert any(re.fullmatch(r"-----> Using Python 3\.12\.\d+, the stack's newest .*", line) for line in build.lines), build.output
    build = fresh.build({"requirements.txt": "", ".python-version": "3.11"}, **env)
    assert re.fullmatch(r" !     .* this stack has Python 3\.12\.\d+; change \.python-version to one of them, like 3\.12\.", failure(build))


@pytest.mark.parametrize("installer", ["uv", "poetry1", "poetry2", "pipenv"])
def test_a_lockfile_is_installed_exactly_without_dev_dependencies(fresh: Builder, run_slug, installer: str) -> None:
    build = fresh.build(locked_app(installer), timeout=240)
    assert_succeeded(build)
    source = {"uv": "uv.lock", "poetry1": "poetry.lock", "poetry2": "poetry.lock", "pipenv": "Pipfile.lock"}[installer]
    assert f"-----> Installing requirements exactly as locked with pip from {source}" in build.lines
    python = "3.11" if installer == "poetry1" else "3.12"  # runtime.txt / .python-version / requires-python / Pipfile.lock
    # the project allows any six >= 1.15 (1.17 is out), the lock says 1.16.0; iniconfig is a dev dependency
    assert run_slug(build).get("/?six&iniconfig") == f"python {python}; six 1.16.0; iniconfig absent"


@pytest.mark.parametrize(
    ("installer", "project_file", "change", "message"),
    [
        ("uv", "pyproject.toml", ('"six>=1.15"', '"six>=1.15", "iniconfig"'),
         "uv.lock does not match pyproject.toml (see above); run `uv lock` and commit uv.lock."),
        ("poetry2", "pyproject.toml", ('"six (>=1.15)"', '"six (>=1.15)", "iniconfig"'),
         "poetry.lock does not match pyproject.toml (see above); run `poetry lock` and commit poetry.lock."),
        ("pipenv", "Pipfile", ('six = "==1.16.0"', 'six = "==1.16.0"\niniconfig = "*"'),
         "Pipfile.lock does not match the Pipfile (see above); run `pipenv lock` and commit Pipfile.lock."),
    ],
)
def test_an_outdated_lockfile_fails_the_build(fresh: Builder, installer: str, project_file: str, change: tuple[str, str], message: str) -> None:
    files = locked_app(installer)
    text = files[project_file].decode()
    assert change[0] in text
    files[project_file] = text.replace(change[0], change[1]).encode()
    build = fresh.build(files, timeout=240)
    assert failure(build) == f" !     {message}"


def test_requirements_with_includes_extras_and_hashes(fresh: Builder, run_slug) -> None:
    build = fresh.build(with_web_app("python_requirements"), timeout=240)
    assert_succeeded(build)
    assert re.fullmatch(r"python 3\.\d+; requests 2\.32\.3; pysocks 1\.7\.1", run_slug(build).get("/?requests&pysocks"))


def test_a_tampered_hash_fails_the_install(fresh: Builder) -> None:
    files = with_web_app("python_requirements")
    common = files["requirements/common.txt"].decode()
    block = re.search(r"pysocks==1\.7\.1(\s*\\\n\s+--hash=sha256:[0-9a-f]+)+", common)
    assert block, common
    forged = re.sub(r"sha256:[0-9a-f]+", "sha256:" + "0" * 64, block[0])
    files["requirements/common.txt"] = common.replace(block[0], forged).encode()
    build = fresh.build(files, timeout=240)
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in build.output
    assert failure(build).startswith(" !     pip could not install the requirements from requirements.txt")


def test_setup_py_app_installs_its_dependencies(fresh: Builder, run_slug) -> None:
    build = fresh.build(with_web_app("python_setup_py"), timeout=240)
    assert_succeeded(build)
    assert "-----> Installing requirements with pip from setup.py" in build.lines
    assert re.fullmatch(r"python 3\.\d+; six 1\.16\.0; setup-py-app 1\.0", run_slug(build).get("/?six&setup-py-app"))
