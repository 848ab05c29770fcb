from __future__ import annotations

from keys.ratelimit import LoginLimiter


def test_limits_per_address_and_per_user_and_forgets_old_entries() -> None:
    clock = [1000.0]
    limiter = LoginLimiter(per_address=3, per_user=2, window=60, clock=lambda: clock[0], max_tracked=5)
    limiter.failed("10.0.0.1", "a@example.com")
    limiter.failed("10.0.0.2", "a@example.com")
    assert limiter.blocked("10.0.0.3", "a@example.com") and not limiter.blocked("10.0.0.3", "b@example.com")
    for _ in range(3):
        limiter.failed("10.0.0.9")
    assert limiter.blocked("10.0.0.9")
    clock[0] += 61
    assert not limiter.blocked("10.0.0.3", "a@example.com") and not limiter.blocked("10.0.0.9")

    for n in range(10):
        limiter.failed(f"10.1.0.{n}")
    clock[0] += 61
    limiter.failed("10.2.0.1")
    assert len(limiter._failures) <= 2  # the stale ones were forgotten
