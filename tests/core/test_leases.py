"""Leases in the database, on SQLite, MariaDB and PostgreSQL: one holder, expiry, renewal, guarded release."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from core import leases
from core.db import Database
from core.models import Lease as LeaseRow


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    database.upgrade()
    yield database
    database.dispose()


def expire(db: Database, name: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(sa.update(LeaseRow).where(LeaseRow.name == name)
                     .values(expires_at=leases.utcnow() - timedelta(seconds=1)))


def test_one_holder_until_it_releases_or_its_lease_expires(db: Database) -> None:
    first = leases.acquire(db, "deploy:shop", "ann@example.com", "replica-a", 30)
    assert not first.took_over
    with pytest.raises(leases.LeaseTaken) as refused:
        leases.acquire(db, "deploy:shop", "bob@example.com", "replica-b", 30)
    assert (refused.value.holder.holder, refused.value.holder.replica) == ("ann@example.com", "replica-a")
    assert abs((refused.value.holder.since - first.since).total_seconds()) < 1e-3  # microseconds kept
    assert leases.acquire(db, "deploy:other", "bob@example.com", "replica-b", 30)  # per name

    expire(db, "deploy:shop")
    second = leases.acquire(db, "deploy:shop", "bob@example.com", "replica-b", 30)
    assert second.took_over
    assert not leases.renew(db, first)  # the first holder learns it lost the lease
    leases.release(db, first)  # and its late release frees nothing
    assert leases.read(db, "deploy:shop").holder == "bob@example.com"
    assert leases.renew(db, second)
    leases.release(db, second)
    assert leases.read(db, "deploy:shop") is None
    assert not leases.acquire(db, "deploy:shop", "carol@example.com", "replica-a", 30).took_over


def test_racing_takers_get_exactly_one_lease(db: Database) -> None:
    expire(db, "periodic:backup")  # no row yet: all race on the INSERT; then again on an expired row
    for round_ in range(2):
        won: list[str] = []
        start = threading.Barrier(6)

        def take(who: str) -> None:
            start.wait()
            try:
                leases.acquire(db, "periodic:backup", who, who, 30)
                won.append(who)
            except leases.LeaseTaken:
                pass

        threads = [threading.Thread(target=take, args=(f"r{i}",)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1, (round_, won)
        expire(db, "periodic:backup")


def test_held_renews_while_the_block_runs(db: Database) -> None:
    async def scenario() -> None:
        # a lease of 1.5 s renewed every 0.5 s: long enough that a busy machine's late renewal still comes in time
        async with leases.held(db, "deploy:shop", "ann@example.com", "replica-a", 1.5) as lease:
            first_expiry = leases.read(db, "deploy:shop").expires_at
            await asyncio.sleep(2)  # longer than the lease: only renewal keeps it
            current = leases.read(db, "deploy:shop")
            assert current.expires_at > first_expiry and current.holder == lease.holder
            with pytest.raises(leases.LeaseTaken):
                leases.acquire(db, "deploy:shop", "bob@example.com", "replica-b", 30)
        assert leases.read(db, "deploy:shop") is None

    asyncio.run(scenario())


def test_background_work_runs_on_one_replica_and_moves_when_it_stops(db: Database) -> None:
    asyncio.run(_one_replica_at_a_time(db))


async def _one_replica_at_a_time(db: Database) -> None:
    running: list[str] = []
    started = {"a": asyncio.Event(), "b": asyncio.Event()}

    def work(replica: str):
        async def run() -> None:
            running.append(replica)
            started[replica].set()
            try:
                await asyncio.Event().wait()
            finally:
                running.remove(replica)
        return run

    a = asyncio.create_task(leases.while_held(db, "periodic:test", "a", 3, work("a")))
    await asyncio.wait_for(started["a"].wait(), 10)
    b = asyncio.create_task(leases.while_held(db, "periodic:test", "b", 3, work("b")))
    await asyncio.sleep(3.5)  # longer than a lease period: b asks again (every 1 s) while a holds and renews it
    assert running == ["a"] and leases.read(db, "periodic:test").replica == "a"

    a.cancel()  # replica a stops: its lease is released and b takes over at its next ask
    await asyncio.wait_for(started["b"].wait(), 10)
    assert running == ["b"]
    b.cancel()
    await asyncio.gather(a, b, return_exceptions=True)
    assert running == [] and leases.read(db, "periodic:test") is None


def test_background_work_that_finishes_releases_its_lease(db: Database) -> None:
    asyncio.run(_finishes(db))


async def _finishes(db: Database) -> None:
    ran = []

    async def once() -> None:
        ran.append(leases.read(db, "periodic:once").replica)

    await asyncio.wait_for(leases.while_held(db, "periodic:once", "a", 30, once), 10)
    assert ran == ["a"] and leases.read(db, "periodic:once") is None
