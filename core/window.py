"""Sliding-window counts: how many events each key had in the last `window` seconds, in bounded memory.

The login budgets (keys.ratelimit) and the audit log's budget of denials per user (core.audit)
count with it. It lives in one process: replicas split a budget between them (TERESA_REPLICAS).
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from typing import Callable

MAX_TRACKED = 10_000


class SlidingWindow:
    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic, max_tracked: int = MAX_TRACKED):
        self.window = window
        self.clock = clock
        self.max_tracked = max_tracked
        self._events: dict[str, deque[float]] = defaultdict(deque)

    def count(self, key: str) -> int:
        """Events of `key` in the window."""
        entries = self._events.get(key)
        if entries is None:
            return 0
        cutoff = self.clock() - self.window
        while entries and entries[0] <= cutoff:
            entries.popleft()
        if not entries:
            del self._events[key]
        return len(entries)

    def add(self, key: str) -> float:
        """Count one event of `key` now; returns its time, for `remove`."""
        now = self.clock()
        if len(self._events) > self.max_tracked:  # keys that never came back: forget them
            for stale in [k for k, v in self._events.items() if not v or v[-1] <= now - self.window]:
                del self._events[stale]
        self._events[key].append(now)
        return now

    def remove(self, key: str, at: float) -> None:
        """Take back one event of `key` counted at `at` (if the window still holds it)."""
        entries = self._events.get(key)
        if entries is not None and at in entries:
            entries.remove(at)

    def __len__(self) -> int:
        """How many keys are tracked."""
        return len(self._events)
