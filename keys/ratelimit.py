"""Failed-login limits, per source address and per user, over a sliding window."""

from __future__ import annotations

import time
from typing import Callable
from collections import defaultdict, deque


MAX_TRACKED = 10_000


class LoginLimiter:
    def __init__(self, per_address: int = 20, per_user: int = 10, window: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, max_tracked: int = MAX_TRACKED):
        self.clock = clock
        self.max_tracked = max_tracked
        self.per_address = per_address
        self.per_user = per_user
        self.window = window
        self._failures: dict[str, deque[float]] = defaultdict(deque)

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

    def blocked(self, address: str, user: str | None = None) -> bool:
        now = self.clock()
        if self._recent(f"addr:{address}", now) >= self.per_address:
            return True
        return bool(user) and self._recent(f"user:{user}", now) >= self.per_user

    def failed(self, address: str, user: str | None = None) -> None:
        now = self.clock()
        if len(self._failures) > self.max_tracked:  # addresses that never came back: forget them
            for key in [k for k, v in self._failures.items() if v[-1] <= now - self.window]:
                del self._failures[key]
        self._failures[f"addr:{address}"].append(now)
        if user:
            self._failures[f"user:{user}"].append(now)
