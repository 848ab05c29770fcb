"""Shared test fixtures. Fixture modules live in tests/fixtures/ and are listed here."""

from __future__ import annotations

import os

import pytest

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test` runs `-n` workers, `--dist loadgroup`), every test of the real
    cluster runs on one worker: each worker would otherwise start a cluster of its own."""
    cluster = config.rootpath / "tests" / "cluster"
    for item in items:
        if cluster in item.path.parents:
            item.add_marker(pytest.mark.xdist_group("cluster"))
