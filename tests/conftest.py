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
