"""Shared test fixtures. Fixture modules live in tests/fixtures/ and are listed here."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.tenancy import reachable_by_apps

pytest_plugins = [
    "tests.fixtures.databases",
    "tests.fixtures.kube",
    "tests.fixtures.kubelet",
    "tests.fixtures.s3",
    "tests.fixtures.teresa",
]


def require_services() -> bool:
    """CI sets TERESA_TEST_REQUIRE_SERVICES=1: a missing service is then a failure, not a skip."""
    return os.environ.get("TERESA_TEST_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    if require_services():
        pytest.fail(f"{reason} (TERESA_TEST_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@pytest.fixture
def tmp_path(tmp_path: Path) -> Iterator[Path]:
    """As root, a temporary directory the apps' own users can reach (see reachable_by_apps), removed after
    the test; otherwise pytest's own."""
    if os.geteuid() != 0:
        yield tmp_path
        return
    path = reachable_by_apps()
    yield path
    shutil.rmtree(path, ignore_errors=True)


MISSING_TOOL = "is not installed"  # every skip for a missing tool or service says this


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under TERESA_TEST_REQUIRE_SERVICES=1 a test skipped because a tool is missing fails instead:
    CI installs every tool, so such a skip means .ci/run lost one."""
    outcome = yield
    report = outcome.get_result()
    if require_services() and report.skipped and isinstance(report.longrepr, tuple) \
            and MISSING_TOOL in str(report.longrepr[2]):
        report.outcome = "failed"
        report.longrepr = f"{report.longrepr[2]} (TERESA_TEST_REQUIRE_SERVICES=1: .ci/run must install it)"


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test` runs `-n` workers, `--dist loadgroup`) each module runs on one worker, in
    order: many share a server or a pushed app through module-scoped fixtures. Every test of the real cluster
    runs on one worker too (each worker would otherwise start a cluster of its own); a test's own
    `xdist_group` mark (e.g. the Go builds sharing one build cache) wins."""
    cluster = config.rootpath / "tests" / "cluster"
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        group = "cluster" if cluster in item.path.parents else item.path.relative_to(config.rootpath).as_posix()
        item.add_marker(pytest.mark.xdist_group(group))
