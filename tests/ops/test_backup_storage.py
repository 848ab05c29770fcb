"""Backups in storage: naming, listing, restoring by name, pruning, and the periodic loop."""

from __future__ import annotations

import asyncio
import io
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

import pytest
import sqlalchemy as sa

from core.backup import (
    BackupError,
    backup_key,
    backup_to_storage,
    list_backups,
    prune_storage,
    restore_from_storage,
    run_periodic_backups,
)
from core.config import StorageSettings
from core.storage import LocalStorage, Storage, storage_for
from tests.ops.test_backup_dump import contents, fill, metadata, wipe

UTC = timezone.utc


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture
def any_store(any_storage: StorageSettings) -> Storage:
    """Local and S3 (SeaweedFS) in turn."""
    return storage_for(any_storage)


@pytest.fixture
def engine(tmp_path: Path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'teresa.sqlite'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_backup_names_are_utc_timestamps() -> None:
    taken = datetime(2026, 11, 22, 5, 4, 3, 999, tzinfo=timezone(timedelta(hours=2)))
    assert backup_key(taken) == "backups/teresa-20261122T030403Z.json.gz"


def test_backup_list_restore_by_name(engine: sa.Engine, any_store: Storage) -> None:
    storage = any_store
    fill(engine)
    before = contents(engine)
    taken = backup_to_storage(engine, metadata, storage, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    storage.put_stream("backups/README.txt", io.BytesIO(b"not a backup"))

    listed = list_backups(storage)
    assert [b.name for b in listed] == ["teresa-20260102T030405Z.json.gz"]
    assert listed[0] == taken and listed[0].taken_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    wipe(engine)
    restore_from_storage(engine, metadata, storage, "teresa-20260102T030405Z.json.gz")
    assert contents(engine) == before
    with pytest.raises(BackupError, match="not empty"):
        restore_from_storage(engine, metadata, storage, taken.key)
    restore_from_storage(engine, metadata, storage, taken.key, force=True)
    assert contents(engine) == before


def test_restoring_an_unknown_name_says_how_to_list_backups(engine: sa.Engine, storage: LocalStorage) -> None:
    with pytest.raises(BackupError, match="no backup named teresa-x.json.gz; `teresa backup:list`"):
        restore_from_storage(engine, metadata, storage, "teresa-x.json.gz")


def test_prune_storage_deletes_what_the_rule_lets_go(engine: sa.Engine, any_store: Storage) -> None:
    storage = any_store
    now = datetime(2026, 6, 1, tzinfo=UTC)
    old_day = now - timedelta(days=40)
    for taken in (old_day, old_day + timedelta(hours=1), now - timedelta(hours=1)):
        backup_to_storage(engine, metadata, storage, taken)
    gone = prune_storage(storage, now)
    assert [b.taken_at for b in gone] == [old_day + timedelta(hours=1)]
    assert [b.taken_at for b in list_backups(storage)] == [old_day, now - timedelta(hours=1)]


class SimulatedTime:
    """A clock and a sleep that advances it, so the loop runs days in milliseconds."""

    def __init__(self, start: datetime, stop_at: datetime) -> None:
        self.now = start
        self.stop_at = stop_at

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        if self.now > self.stop_at:
            raise asyncio.CancelledError
        await asyncio.sleep(0)


def run_loop(engine, storage, interval: timedelta, time: SimulatedTime) -> None:
    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await run_periodic_backups(engine, metadata, storage, interval, clock=time.clock, sleep=time.sleep)

    asyncio.run(main())


def test_periodic_backups_take_one_per_interval_and_prune(engine: sa.Engine, storage: LocalStorage) -> None:
    fill(engine)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    time = SimulatedTime(start, stop_at=start + timedelta(days=33))
    run_loop(engine, storage, timedelta(hours=6), time)

    taken = [b.taken_at for b in list_backups(storage)]
    # every one of the last 30 days, and the first of each of the three older days
    assert taken[:3] == [start, start + timedelta(days=1), start + timedelta(days=2)]
    assert taken[3:] == [start + timedelta(days=3, hours=6 * i) for i in range(30 * 4 + 1)]


def test_a_restarted_loop_waits_for_the_next_due_backup(engine: sa.Engine, storage: LocalStorage) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    backup_to_storage(engine, metadata, storage, start - timedelta(minutes=20))
    time = SimulatedTime(start, stop_at=start + timedelta(minutes=50))
    run_loop(engine, storage, timedelta(hours=1), time)
    assert [b.taken_at for b in list_backups(storage)] == [start - timedelta(minutes=20), start + timedelta(minutes=40)]


def test_a_failing_backup_does_not_stop_the_loop(engine: sa.Engine, storage: LocalStorage) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    time = SimulatedTime(start, stop_at=start + timedelta(hours=2, minutes=30))

    class FlakyStorage(LocalStorage):
        calls = 0

        def put_stream(self, key: str, fileobj: BinaryIO) -> None:
            FlakyStorage.calls += 1
            if FlakyStorage.calls == 1:
                raise OSError("bucket unreachable")
            super().put_stream(key, fileobj)

    flaky = FlakyStorage(storage.root)
    run_loop(engine, flaky, timedelta(hours=1), time)
    assert [b.taken_at for b in list_backups(flaky)] == [start + timedelta(hours=1), start + timedelta(hours=2)]
