"""Leases in the database, on SQLite, MariaDB and PostgreSQL: one holder, expiry, renewal, guarded release."""

from __future__ import annotations

import asyncio
import threading

import pytest
import sqlalchemy as sa

from core import leases
from core.db import Database
from core.models import Lease as LeaseRow
from tests.fixtures.leases import expire, take_over


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    database.upgrade()
    yield database
    database.dispose()


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


def write(holding: leases.Held, mark: str):
    """A write of the holder's work, fenced by its lease in the writing transaction."""
    def work(session) -> None:
        holding.fence(session)
        session.add(LeaseRow(name=mark, holder="work", replica="replica-a", token=mark, since=leases.utcnow(),
                             expires_at=leases.utcnow()))
    return work


def written(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        return sorted(conn.execute(sa.select(LeaseRow.name).where(LeaseRow.name.like("write:%"))).scalars())


def test_a_holder_whose_lease_was_taken_over_is_refused_its_next_write(db: Database) -> None:
    async def scenario() -> None:
        # A lease of 30 s: its renewer does not look again during the test; the fence alone must refuse.
        async with leases.held(db, "deploy:shop", "ann@example.com", "replica-a", 30) as holding:
            await db.run(write(holding, "write:1"))
            take_over(db, "deploy:shop")
            await db.run(write(holding, "write:2"))

    with pytest.raises(leases.LeaseLost) as lost:
        asyncio.run(scenario())
    assert str(lost.value) == "deploy:shop was lost: another holder took it over, or it could not be renewed in time"
    assert written(db) == ["write:1"]
    assert leases.read(db, "deploy:shop").holder == "bob@example.com"  # the loser's release freed nothing


def test_a_holder_whose_lease_was_taken_over_has_its_work_cancelled(db: Database) -> None:
    async def scenario() -> None:
        next_write = asyncio.Event()  # never set: the work waits for it, as a deploy waits on its build
        async with leases.held(db, "deploy:shop", "ann@example.com", "replica-a", 1.5) as holding:
            await db.run(write(holding, "write:1"))
            take_over(db, "deploy:shop")
            await next_write.wait()  # cancelled at the renewer's next look (every 0.5 s)
            await db.run(write(holding, "write:2"))

    with pytest.raises(leases.LeaseLost):
        asyncio.run(asyncio.wait_for(scenario(), 30))
    assert written(db) == ["write:1"]


def test_only_the_lost_lease_cancels_its_work(db: Database) -> None:
    """A task cancelled for its own reasons (its client left) is cancelled, not told its lease was lost."""
    async def scenario() -> None:
        entered = asyncio.Event()

        async def cancelled_from_outside() -> None:
            async with leases.held(db, "deploy:shop", "ann@example.com", "replica-a", 30):
                entered.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(cancelled_from_outside())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert leases.read(db, "deploy:shop") is None


def test_held_renews_while_the_block_runs(db: Database) -> None:
    async def scenario() -> None:
        # a lease of 1.5 s renewed every 0.5 s: long enough that a busy machine's late renewal still comes in time
        async with leases.held(db, "deploy:shop", "ann@example.com", "replica-a", 1.5) as holding:
            first_expiry = leases.read(db, "deploy:shop").expires_at
            await asyncio.sleep(2)  # longer than the lease: only renewal keeps it
            current = leases.read(db, "deploy:shop")
            assert current.expires_at > first_expiry and current.holder == holding.lease.holder
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
