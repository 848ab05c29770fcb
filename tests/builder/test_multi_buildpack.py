"""Several buildpacks for one app, run in order as Heroku's multi-buildpack does; and the static site's directories.

tests/builder/buildpacks/make_tool exports a `greet` tool that use_tool needs;
tests/builder/apps/multi_node_python lists heroku/nodejs then heroku/python in its `.buildpacks` file.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import urllib.error
from pathlib import Path

import pytest

from core.config import StorageSettings
from core.storage import storage_for
from tests.builder.conftest import APPS, TEST_BUILDPACKS, Build, Builder
from tests.builder.test_builds import assert_succeeded


@pytest.fixture
def fresh(tmp_path: Path) -> Builder:
    return Builder(StorageSettings(type="local", root=tmp_path / "storage"))


def slug_file(build: Build, name: str) -> str:
    with storage_for(build.storage).open_read(build.slug_key) as body:
        with tarfile.open(fileobj=io.BytesIO(body.read()), mode="r:gz") as tar:
            return tar.extractfile(name).read().decode()


@pytest.mark.parametrize("separator", [",", "\n"])
def test_buildpack_url_listing_several_runs_them_in_order(fresh: Builder, separator: str) -> None:
    urls = separator.join(str(TEST_BUILDPACKS / name) for name in ("make_tool", "use_tool"))
    build = fresh.build({"README": "an app of two buildpacks"}, BUILDPACK_URL=urls)
    assert_succeeded(build)
    steps = [line for line in build.lines if line.startswith("-----> ")]
    assert steps[:6] == [
        "-----> Make tool app detected", "-----> Use tool app detected",
        f"-----> Buildpack 1 of 2: {TEST_BUILDPACKS / 'make_tool'}", "-----> installed greet",
        f"-----> Buildpack 2 of 2: {TEST_BUILDPACKS / 'use_tool'}", "-----> using greet (warm)",
    ]  # fmt: skip
    assert "       greet says hello to use_tool" in build.lines
    # process types: the last buildpack that declares any; config vars: all of them
    assert "       Default types for buildpack -> web" in build.lines
    assert slug_file(build, "Procfile") == "web: python3 -m http.server $PORT\n"
    assert "FROM_MAKE_TOOL" in slug_file(build, ".profile.d/000-buildpack-config-vars.sh")
    assert not (TEST_BUILDPACKS / "make_tool" / "export").exists()  # written in the build's copy, not here


def test_a_later_buildpack_without_the_earlier_ones_export_fails(fresh: Builder) -> None:
    build = fresh.build({"README": "x"}, BUILDPACK_URL=str(TEST_BUILDPACKS / "use_tool"))
    assert build.status != 0
    assert "greet: not found" in build.output


def test_buildpacks_file_runs_nodejs_then_python(fresh: Builder, run_slug) -> None:
    if not shutil.which("node"):
        pytest.skip("Node.js is not installed on this machine")
    build = fresh.build(APPS / "multi_node_python", timeout=240)
    assert_succeeded(build)
    assert build.lines[:2] == ["-----> Node.js app detected", "-----> Python app detected"]
    assert "-----> Buildpack 2 of 2: heroku/python" in build.lines
    body = run_slug(build).get("/bundle.txt")
    assert body.startswith("bundled by node v") and "python saw node v" in body


def test_a_buildpack_that_does_not_apply_fails_naming_it(fresh: Builder) -> None:
    build = fresh.build({".buildpacks": "static\n", "README": "no index.html"})
    assert build.status != 0
    assert build.lines[-1] == (
        " !     Build failed: The buildpack static does not support this app (its bin/detect said no); check .buildpacks."
    )


def test_static_site_never_lists_directories(fresh: Builder, run_slug) -> None:
    build = fresh.build({"index.html": "<h1>home</h1>", "docs/index.html": "<h1>docs</h1>", "assets/logo.svg": "<svg/>"})
    assert_succeeded(build)
    app = run_slug(build)
    assert app.get("/") == "<h1>home</h1>"
    assert app.get("/docs/") == "<h1>docs</h1>"
    assert app.get("/assets/logo.svg") == "<svg/>"
    for path in ("/assets/", "/assets", "/.teresa/"):
        with pytest.raises(urllib.error.HTTPError) as error:
            app.get(path)
        assert error.value.code == 404, path
