"""The retention rule over two simulated years of hourly backups."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from core.backup import prune

UTC = timezone.utc
HOUR = timedelta(hours=1)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
START = datetime(2024, 1, 1, tzinfo=UTC)  # 731 days before NOW (2024 is a leap year)


def hourly(start: datetime, end: datetime) -> list[datetime]:
    count = int((end - start) / HOUR) + 1
    return [start + i * HOUR for i in range(count)]


def kept(backups: list[datetime], now: datetime) -> set[datetime]:
    return set(backups) - prune(backups, now)


def test_two_years_of_hourly_backups_keep_exact_counts() -> None:
    backups = hourly(START, NOW)
    assert len(backups) == 731 * 24 + 1
    keep = kept(backups, NOW)

    young = {b for b in keep if NOW - b < timedelta(days=30)}
    daily = {b for b in keep if timedelta(days=30) <= NOW - b < timedelta(days=365)}
    monthly = keep - young - daily
    assert len(young) == 30 * 24  # every hour of the last 30 days
    assert len(daily) == 335  # midnight of each day 30..364 days ago
    assert all(b.hour == 0 for b in daily)
    # 2024-01 … 2024-12 and 2025-01, whose first backup is exactly 365 days old
    assert sorted(monthly) == [datetime(y, m, 1, tzinfo=UTC) for y, m in [(2024, i) for i in range(1, 13)] + [(2025, 1)]]
    assert len(keep) == 720 + 335 + 13
    assert len(prune(backups, NOW)) == len(backups) - 1068


def test_pruning_the_kept_set_again_deletes_nothing() -> None:
    backups = hourly(START, NOW)
    keep = kept(backups, NOW)
    assert prune(sorted(keep), NOW) == set()


def test_pruning_daily_as_time_passes_matches_pruning_once() -> None:
    everything: list[datetime] = []
    stored: set[datetime] = set()
    now = START
    while now < NOW:
        day = hourly(now, now + 23 * HOUR)
        everything += day
        stored |= set(day)
        now = day[-1]
        stored -= prune(stored, now)
        now += HOUR
    final = NOW - HOUR
    assert stored == kept(everything, final)


def test_thirty_day_boundary() -> None:
    first_of_day = datetime(2025, 11, 1, tzinfo=UTC)
    second = first_of_day + 2 * HOUR
    backups = [first_of_day, second]
    # exactly 30 days old is no longer "younger than 30 days": only the day's first stays
    assert prune(backups, second + timedelta(days=30)) == {second}
    # a microsecond earlier it still is
    assert prune(backups, second + timedelta(days=30) - timedelta(microseconds=1)) == set()


def test_one_year_boundary() -> None:
    taken = datetime(2025, 3, 10, tzinfo=UTC)  # first of its day, not of its month
    month_first = datetime(2025, 3, 1, tzinfo=UTC)
    backups = [month_first, taken]
    assert prune(backups, taken + timedelta(days=365) - timedelta(microseconds=1)) == set()
    assert prune(backups, taken + timedelta(days=365)) == {taken}
    assert prune(backups, taken + timedelta(days=3650)) == {taken}  # the month's first stays forever


def test_days_and_months_are_utc_whatever_the_timezone_of_the_timestamps() -> None:
    plus_two = timezone(timedelta(hours=2))
    late = datetime(2025, 6, 1, 1, 0, tzinfo=plus_two)  # 2025-05-31T23:00Z
    early = datetime(2025, 6, 1, 3, 0, tzinfo=plus_two)  # 2025-06-01T01:00Z
    now = datetime(2025, 8, 1, tzinfo=UTC)
    assert prune([late, early], now) == set()  # each is the first of its own UTC day


def test_nothing_to_prune_in_an_empty_list() -> None:
    assert prune([], NOW) == set()
