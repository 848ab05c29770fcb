from __future__ import annotations

import contextlib

from core.config import Settings
from core.window import SlidingWindow
from keys.ratelimit import TOO_MANY_AT_ONCE, LoginLimiter, login_limiter


def test_unknown_keys_are_limited_per_address_and_forgotten() -> None:
    clock = [1000.0]
    limiter = LoginLimiter(per_address=3, window=60, clock=lambda: clock[0])
    for _ in range(3):
        limiter.unknown_key("10.0.0.9")
    assert limiter.unknown_key_blocked("10.0.0.9") and not limiter.unknown_key_blocked("10.0.0.8")
    clock[0] += 61
    assert not limiter.unknown_key_blocked("10.0.0.9")


def test_the_window_forgets_keys_that_never_came_back() -> None:
    clock = [1000.0]
    window = SlidingWindow(60, clock=lambda: clock[0], max_tracked=5)
    for n in range(10):
        window.add(f"10.1.0.{n}")
    clock[0] += 61
    window.add("10.2.0.1")
    assert len(window) <= 2


def test_password_attempts_count_as_they_start_so_concurrent_ones_cannot_all_pass() -> None:
    """Finding 1: the budget is taken before bcrypt runs; a right password gives its count back."""
    limiter = LoginLimiter(per_address=100, per_user=3, in_flight_per_address=100, in_flight_per_user=100)
    with contextlib.ExitStack() as running:  # three attempts in flight, none finished yet
        attempts = [running.enter_context(limiter.password_attempt(door="dashboard", address=f"10.0.0.{n}",
                                                                   user="a@example.com")) for n in range(3)]
        assert [a.refused for a in attempts] == ["", "", ""]
        with limiter.password_attempt(door="ssh", address="10.0.0.9", user="a@example.com") as fourth:
            assert fourth.refused == limiter.over_budget  # the other door shares the budget
        attempts[0].succeeded()
    with limiter.password_attempt(door="ssh", address="10.0.0.9", user="a@example.com") as after:
        assert after.refused == ""  # the right password's count was given back
    with limiter.password_attempt(door="ssh", address="10.0.0.9", user="b@example.com") as other:
        assert other.refused == ""
    assert limiter.over_budget == ("Too many login attempts from this address or for this account; "
                                   "wait 5 minutes and try again.")


def test_checks_in_flight_are_bounded_per_address_user_and_door() -> None:
    limiter = LoginLimiter(in_flight_per_address=2, in_flight_per_user=100, in_flight_per_door=3)
    with contextlib.ExitStack() as running:
        for n in range(2):
            assert running.enter_context(limiter.password_attempt(door="dashboard", address="10.0.0.1",
                                                                  user=f"u{n}")).refused == ""
        with limiter.password_attempt(door="dashboard", address="10.0.0.1", user="u9") as third:
            assert third.refused == TOO_MANY_AT_ONCE
        assert running.enter_context(limiter.password_attempt(door="dashboard", address="10.0.0.2",
                                                              user="u3")).refused == ""
        with limiter.password_attempt(door="dashboard", address="10.0.0.3", user="u4") as door_full:
            assert door_full.refused == TOO_MANY_AT_ONCE
        with limiter.password_attempt(door="ssh", address="10.0.0.3", user="u4") as ssh:
            assert ssh.refused == ""  # a full dashboard leaves the SSH door its own checks
        assert limiter.in_flight("dashboard") == 3
    assert limiter.in_flight("dashboard") == 0 and not limiter._in_flight


def test_the_budget_is_split_over_replicas() -> None:
    one = login_limiter(Settings.from_env({}))
    three = login_limiter(Settings.from_env({"TERESA_REPLICAS": "3"}))
    assert one.budgets == {"addr": 20, "user": 10}
    assert three.budgets == {"addr": 7, "user": 4}
