"""Login limits, one limiter for both doors (SSH and the dashboard): password attempts per source
address and per user over a sliding window, password checks in flight, and unknown public keys.

A password attempt is counted against its address's and its user's budget when it starts, before
bcrypt runs, so concurrent attempts cannot all pass the check; a right password gives its count
back. Checks also count while they run (bcrypt is slow on purpose): at most a few at a time per
address, per user and per door, so a flood is refused at once instead of queueing, and one door's
flood leaves the other door its own bcrypt threads (keys.passwords). Each replica keeps its own
counts with its share of the budget (TERESA_REPLICAS).

Password attempts never block public-key logins, which are counted apart (an unknown key, per
address). The limiter is used from the event loop only.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterator

from core.config import Settings
from core.window import MAX_TRACKED, SlidingWindow
from keys.passwords import Door

PER_ADDRESS, PER_USER = 20, 10  # password attempts in WINDOW, for one replica alone
WINDOW = 300.0
TOO_MANY_AT_ONCE = "Too many logins are being checked at once; try again in a few seconds."


@dataclass(frozen=True)
class Attempt:
    """A password attempt: `refused` is the sentence that says why it may not be checked ("" when it may)."""

    refused: str
    succeeded: Callable[[], None]  # call when the password was right: a login that worked costs no budget


def _nothing() -> None:
    pass


class LoginLimiter:
    def __init__(self, per_address: int = PER_ADDRESS, per_user: int = PER_USER, window: float = WINDOW,
                 clock: Callable[[], float] = time.monotonic, max_tracked: int = MAX_TRACKED,
                 in_flight_per_address: int = 2, in_flight_per_user: int = 2, in_flight_per_door: int = 8):
        self.recent = SlidingWindow(window, clock, max_tracked)
        self.budgets = {"addr": per_address, "user": per_user}
        self.in_flight_limits = {"addr": in_flight_per_address, "user": in_flight_per_user,
                                 "door": in_flight_per_door}
        self.over_budget = (f"Too many login attempts from this address or for this account; wait "
                            f"{math.ceil(window / 60)} minutes and try again.")
        self._in_flight: Counter[str] = Counter()

    def unknown_key_blocked(self, address: str) -> bool:
        """Too many unknown public keys from this address lately."""
        return self.recent.count(f"publickey:addr:{address}") >= self.budgets["addr"]

    def unknown_key(self, address: str) -> None:
        self.recent.add(f"publickey:addr:{address}")

    def in_flight(self, door: Door) -> int:
        """Password checks running (or waiting for bcrypt) at this door."""
        return self._in_flight[f"door:{door}"]

    def _refusal(self, budgets: dict[str, str], flights: dict[str, str]) -> str:
        if any(self.recent.count(key) >= self.budgets[kind] for kind, key in budgets.items()):
            return self.over_budget
        if any(self._in_flight[key] >= self.in_flight_limits[kind] for kind, key in flights.items()):
            return TOO_MANY_AT_ONCE
        return ""

    @contextlib.contextmanager
    def password_attempt(self, *, door: Door, address: str, user: str) -> Iterator[Attempt]:
        """Counts this attempt against the budgets as it starts and as in flight until the block ends;
        a refused attempt counts nowhere."""
        budgets = {"addr": f"password:addr:{address}", "user": f"password:user:{user}"}
        flights = {"addr": f"addr:{address}", "user": f"user:{user}", "door": f"door:{door}"}
        refusal = self._refusal(budgets, flights)
        if refusal:
            yield Attempt(refusal, _nothing)
            return
        counted = [(key, self.recent.add(key)) for key in budgets.values()]
        self._in_flight.update(flights.values())
        try:
            yield Attempt("", functools.partial(self._give_back, counted))
        finally:
            self._in_flight.subtract(flights.values())
            for key in flights.values():
                if self._in_flight[key] <= 0:
                    del self._in_flight[key]

    def _give_back(self, counted: list[tuple[str, float]]) -> None:
        for key, at in counted:
            self.recent.remove(key, at)


def login_limiter(settings: Settings) -> LoginLimiter:
    """The limiter both doors of one replica share, with its share of the budget (see the README)."""
    share = settings.login_budget_replicas
    return LoginLimiter(per_address=math.ceil(PER_ADDRESS / share), per_user=math.ceil(PER_USER / share))
