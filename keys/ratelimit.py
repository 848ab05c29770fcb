"""Login limits: failures per source address and per user over a sliding window, and password
attempts in flight.

Password failures block further password attempts from that address or for that user; they never
block public-key logins, which are counted apart (an unknown key, per address). Password checks
also count while they run (bcrypt is slow on purpose): at most a few at a time per address, per
user and in all, so a flood is refused at once instead of queueing for the bcrypt pool.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter, defaultdict, deque
from typing import Callable, Iterator, Literal

MAX_TRACKED = 10_000
Method = Literal["password", "publickey"]


class LoginLimiter:
    def __init__(self, per_address: int = 20, per_user: int = 10, window: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, max_tracked: int = MAX_TRACKED,
                 in_flight_per_address: int = 2, in_flight_per_user: int = 2, in_flight_total: int = 16):
        self.clock = clock
        self.max_tracked = max_tracked
        self.per_address = per_address
        self.per_user = per_user
        self.window = window
        self.in_flight_per_address = in_flight_per_address
        self.in_flight_per_user = in_flight_per_user
        self.in_flight_total = in_flight_total
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._in_flight: Counter[str] = Counter()

    def _recent(self, key: str, now: float) -> int:
        entries = self._failures.get(key)
        if entries is None:
            return 0
        while entries and entries[0] <= now - self.window:
            entries.popleft()
        if not entries:
            del self._failures[key]
            return 0
        return len(entries)

    def blocked(self, address: str, user: str | None = None, method: Method = "password") -> bool:
        """Too many recent failures of this method from this address (or, for passwords, for this user)."""
        now = self.clock()
        if self._recent(f"{method}:addr:{address}", now) >= self.per_address:
            return True
        return method == "password" and bool(user) and self._recent(f"password:user:{user}", now) >= self.per_user

    def failed(self, address: str, user: str | None = None, method: Method = "password") -> None:
        now = self.clock()
        if len(self._failures) > self.max_tracked:  # addresses that never came back: forget them
            for key in [k for k, v in self._failures.items() if v[-1] <= now - self.window]:
                del self._failures[key]
        self._failures[f"{method}:addr:{address}"].append(now)
        if user and method == "password":
            self._failures[f"password:user:{user}"].append(now)

    @contextlib.contextmanager
    def password_attempt(self, address: str, user: str) -> Iterator[bool]:
        """Yields whether this password may be checked now; counts it as in flight until the block ends."""
        keys = (f"addr:{address}", f"user:{user}", "total")
        limits = (self.in_flight_per_address, self.in_flight_per_user, self.in_flight_total)
        if any(self._in_flight[key] >= limit for key, limit in zip(keys, limits)):
            yield False
            return
        self._in_flight.update(keys)
        try:
            yield True
        finally:
            self._in_flight.subtract(keys)
            for key in keys:
                if self._in_flight[key] <= 0:
                    del self._in_flight[key]
