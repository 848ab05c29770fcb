"""The router's connections to app replicas: a pool of idle keep-alive connections per port."""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass

IDLE_SECONDS = 30.0
MAX_IDLE_PER_PORT = 128
CONNECT_TIMEOUT = 5.0
READ_LIMIT = 256 * 1024


@dataclass(eq=False)
class Upstream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    reused: bool = False
    idle_since: float = 0.0

    def usable(self, now: float) -> bool:
        """Idle not too long, still open, and silent: bytes the app sent while the connection sat idle
        (a 408 before closing it, say) would be read as the answer to the next request. StreamReader
        has no public way to ask whether it holds data; `_buffer` is its buffer since Python 3.4."""
        return (now - self.idle_since < IDLE_SECONDS and not self.writer.is_closing()
                and not self.reader.at_eof() and not self.reader._buffer)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.writer.close()


class Pool:
    def __init__(self, host: str) -> None:
        self.host = host
        self._idle: dict[int, collections.deque[Upstream]] = collections.defaultdict(collections.deque)

    async def acquire(self, port: int) -> Upstream:
        """An idle connection to `port` that looks alive (the newest first), or a new one."""
        idle = self._idle.get(port)
        now = time.monotonic()
        while idle:
            upstream = idle.pop()
            if upstream.usable(now):
                upstream.reused = True
                return upstream
            upstream.close()
        return await self.connect(port)

    async def connect(self, port: int) -> Upstream:
        """A new connection, not from the pool."""
        async with asyncio.timeout(CONNECT_TIMEOUT):
            reader, writer = await asyncio.open_connection(self.host, port, limit=READ_LIMIT)
        return Upstream(reader, writer)

    def release(self, port: int, upstream: Upstream) -> None:
        idle = self._idle[port]
        if len(idle) >= MAX_IDLE_PER_PORT or upstream.writer.is_closing():
            upstream.close()
            return
        upstream.idle_since = time.monotonic()
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
