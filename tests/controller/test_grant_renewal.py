"""The periodic renewal of the runtime's storage grants: one replica at a time, under the `periodic:grants` lease."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.grant_renewal import LEASE, renew_once, renewal_loop
from core import leases
from core.config import Settings
from core.db import Database
from core.services import Services


class CountingRuntime:
    """Stands for the Kubernetes runtime: what is under test is who renews and when, not the Secrets."""

    def __init__(self) -> None:
        self.rounds = 0

    async def refresh_grants(self) -> int:
        self.rounds += 1
        return 2


@pytest.fixture
def replicas(database_url: str, tmp_path: Path) -> Iterator[tuple[Services, Services]]:
    db = Database(database_url)
    db.upgrade()
    base = Settings.from_env({"TERESA_DATA_DIR": str(tmp_path), "TERESA_SLUG_URL_REFRESH_INTERVAL": "1"})
    yield tuple(Services(settings=dataclasses.replace(base, replica_name=name), db=db, storage=None)  # type: ignore[misc]
                for name in ("replica-a", "replica-b"))
    db.dispose()


def test_only_the_replica_holding_the_lease_renews(replicas: tuple[Services, Services]) -> None:
    a, b = replicas
    runtime = CountingRuntime()

    async def scenario() -> None:
        async with leases.held(a.db, LEASE, "grant renewal", "replica-a", 30):
            assert await renew_once(b, runtime) is None  # A is renewing: B skips this round
        assert runtime.rounds == 0
        assert await renew_once(b, runtime) == 2 and runtime.rounds == 1
        assert leases.read(b.db, LEASE) is None  # released after the round

    asyncio.run(scenario())


def test_the_loop_renews_every_interval(replicas: tuple[Services, Services]) -> None:
    runtime = CountingRuntime()

    async def scenario() -> None:
        loop = asyncio.create_task(renewal_loop(replicas[0], runtime))
        try:
            async with asyncio.timeout(10):
                while runtime.rounds < 2:
                    await asyncio.sleep(0.05)
        finally:
            loop.cancel()

    asyncio.run(scenario())
