"""The Go buildpack's conventions: go.mod's go/toolchain lines, vendored modules, and what the build prints.

Apps: tests/builder/apps/go_getting_started (shaped like Heroku's Go getting-started app: go.mod,
a main package and an internal one) and go_vendored (its only dependency exists in vendor/ alone).
"""

from __future__ import annotations

import re
import shutil
import pytest

from tests.builder.conftest import APPS, Builder, app_files
from tests.builder.test_builds import assert_succeeded

pytestmark = [pytest.mark.skipif(not shutil.which("go"), reason="Go is not installed on this machine (CI installs golang-go)"),
              pytest.mark.xdist_group("go")]  # one worker, one Go build cache (go_builder)


def test_go_getting_started_app_lists_its_own_packages(go_builder: Builder, run_slug) -> None:
    build = go_builder.build(APPS / "go_getting_started", timeout=300)
    assert_succeeded(build)
    assert any(re.fullmatch(r"-----> Using go version go1\.\d+(\.\d+)? \S+", line) for line in build.lines), build.output
    packages = build.output.split("-----> Building with Go modules\n")[1].split("       Installed")[0].split()
    assert packages == ["github.com/example/go-getting-started", "github.com/example/go-getting-started/internal/greeting"]
    assert "runtime" not in build.output.split() and "net/http" not in build.output  # no standard library dump
    assert "       Installed bin/go-getting-started" in build.lines
    assert re.fullmatch(r"Hello from Go \(built with go1\.\d+(\.\d+)?\)", run_slug(build).get("/"))


def test_vendored_modules_build_offline(go_builder: Builder, run_slug) -> None:
    build = go_builder.build(APPS / "go_vendored", {"GOPROXY": "off"}, timeout=300)
    assert_succeeded(build)
    assert "-----> Building with Go modules, vendored in vendor/ (-mod=vendor)" in build.lines
    assert run_slug(build).get("/") == "Hello from a vendored module"


def test_a_go_version_that_cannot_be_had_is_one_sentence(go_builder: Builder) -> None:
    files = app_files("go_getting_started")
    files["go.mod"] = b"module github.com/example/go-getting-started\n\ngo 1.99.1\n"
    build = go_builder.build(files, timeout=300)
    assert build.status != 0
    assert re.fullmatch(r" !     Go 1\.99\.1, which go\.mod asks for, could not be downloaded and the stack has only Go 1\.\d+\.\d+; "
                        r"lower the go and toolchain lines of go\.mod to 1\.\d+\.\d+ or less, or check GOPROXY\.", build.lines[-2]), build.output  # fmt: skip
    assert "-----> go.mod asks for Go 1.99.1; the stack has Go " in build.output


def test_a_compile_error_names_the_file_not_the_toolchain(go_builder: Builder) -> None:
    files = app_files("go_getting_started")
    files["internal/greeting/greeting.go"] = b"package greeting\n\nfunc For(language string) string { return 42 }\n"
    build = go_builder.build(files, timeout=300)
    assert build.status != 0
    assert any("internal/greeting/greeting.go:3" in line for line in build.lines), build.output
    assert build.lines[-2] == " !     go install failed (see above); fix the code or its dependencies."
