"""At most N builds at once on this server; the others wait in line and hear their place in it.

`TERESA_MAX_CONCURRENT_BUILDS` (default: the CPU count) bounds the CPU and memory builds
take, so fifty pushes at once all succeed instead of all crawling. A waiting push sees
`-----> Waiting for a build slot (3 ahead)` whenever its place changes; git's keepalives
keep the connection open meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import AsyncIterator

from controller.runtime.base import LineSink

REPORT_EVERY = 15.0  # seconds: a waiting push hears its place at least this often


class BuildSlots:
    """Only touched from the event loop thread."""

    def __init__(self, limit: int):
        self.limit = max(1, limit)
        self.running = 0
        self.waiting: deque[asyncio.Future[None]] = deque()
        self.moved = asyncio.Event()  # set (and replaced) each time the line moves

    @contextlib.asynccontextmanager
    async def slot(self, out: LineSink) -> AsyncIterator[None]:
        if self.running < self.limit and not self.waiting:
            self.running += 1
        else:
            await self._wait(out)
        try:
            yield
        finally:
            self._hand_on()

    async def _wait(self, out: LineSink) -> None:
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        told = -1
        try:
            while not turn.done():
                ahead = self.waiting.index(turn)
                if ahead != told:
                    await out(f"-----> Waiting for a build slot ({ahead} ahead)")
                    told = ahead
                moved: asyncio.Future[None] = asyncio.ensure_future(self._moved())
                done, _ = await asyncio.wait({turn, moved}, timeout=REPORT_EVERY,
                                             return_when=asyncio.FIRST_COMPLETED)
                moved.cancel()
                if not done:
                    told = -1  # say it again: a line now and then, so the wait is never silent
        except BaseException:
            if turn.done():  # the slot was handed over as we were cancelled: pass it on
                self._hand_on()
            else:
                self.waiting.remove(turn)
            raise

    async def _moved(self) -> None:
        await self.moved.wait()

    def _hand_on(self) -> None:
        """The slot goes to the first in line, or is freed; those still waiting hear they moved."""
        self.moved.set()
        self.moved = asyncio.Event()
        while self.waiting:
            turn = self.waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.running -= 1
