"""The router's connections to app replicas, and a pool of idle keep-alive ones per port."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Protocol

IDLE_SECONDS = 30.0
MAX_IDLE_PER_PORT = 128
CONNECT_TIMEOUT = 5.0


class Receiver(Protocol):
    """What an upstream connection reports to the exchange using it (proxy.Exchange)."""

    def app_data(self, data: bytes) -> None: ...
    def app_ended(self, exc: Exception | None) -> bool: ...  # (exc None: a half close) keep it half open?
    def app_full(self, full: bool) -> None: ...


class Upstream(asyncio.Protocol):
    """One connection to a replica; what it receives goes to the exchange using it, if any."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.receiver: Receiver | None = None
        self.idle_since = 0.0
        self.broken = False  # closed, or the app said something while no request was waiting
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.receiver is not None:
            self.receiver.app_data(data)
        else:  # bytes while idle (a 408 before closing, say) would be read as the next request's answer
            self.close()

    def eof_received(self) -> bool:
        self.broken = True
        return self.receiver is not None and self.receiver.app_ended(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.broken = self.lost = True
        if self.receiver is not None:
            self.receiver.app_ended(exc or ConnectionResetError("the app's connection closed"))

    def pause_writing(self) -> None:
        if self.receiver is not None:
            self.receiver.app_full(True)

    def resume_writing(self) -> None:
        if self.receiver is not None:
            self.receiver.app_full(False)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def usable(self, now: float) -> bool:
        return (not self.broken and self.transport is not None and not self.transport.is_closing()
                and now - self.idle_since < IDLE_SECONDS)

    def close(self) -> None:
        self.broken = True
        self.receiver = None
        if self.transport is not None:
            self.transport.close()


class Pool:
    def __init__(self, host: str) -> None:
        self.host = host
        self._idle: dict[int, collections.deque[Upstream]] = collections.defaultdict(collections.deque)

    def take(self, port: int) -> Upstream | None:
        """An idle connection to `port` that looks alive (the newest first), or None."""
        idle = self._idle.get(port)
        now = time.monotonic()
        while idle:
            upstream = idle.pop()
            if upstream.usable(now):
                return upstream
            upstream.close()
        return None

    async def connect(self, port: int) -> Upstream:
        """A new connection, not from the pool."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _, upstream = await loop.create_connection(lambda: Upstream(port), self.host, port)
        return upstream

    def release(self, upstream: Upstream) -> None:
        upstream.receiver = None
        upstream.idle_since = time.monotonic()
        idle = self._idle[upstream.port]
        if len(idle) >= MAX_IDLE_PER_PORT or not upstream.usable(upstream.idle_since):
            upstream.close()
            return
        assert upstream.transport is not None
        upstream.transport.resume_reading()  # it may have been paused for a slow client
        idle.append(upstream)

    def sweep(self) -> None:
        """Close the connections idle for too long (to replicas that may be gone)."""
        now = time.monotonic()
        for port, idle in list(self._idle.items()):
            while idle and not idle[0].usable(now):
                idle.popleft().close()
            if not idle:
                del self._idle[port]

    def close(self) -> None:
        for idle in self._idle.values():
            for upstream in idle:
                upstream.close()
        self._idle.clear()
