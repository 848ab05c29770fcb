"""The router's client connections: at most so many per client address, and headers on time.

aiohttp's server has no limit on how long a client may take to send a request's
headers, so a few clients trickling a byte at a time (slowloris) would each hold
a connection for ever, and nothing limits how many connections one address
holds. `Guard` wraps each connection's aiohttp protocol: over the per-address cap
the connection is answered 503 and closed at once; otherwise the connection is
closed when a request's headers have not all arrived HEADER_TIMEOUT seconds after
it was opened or after the previous response (the router reports each request's
start and end).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from core import log

logger = log.get("router")
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        b"Content-Length: 58\r\n\r\nToo many connections from your address; close some first.\n")


class Connections:
    """What every Guard of one router shares: the limits, and the live count per address."""

    def __init__(self, header_timeout: float, max_per_address: int):
        self.header_timeout = header_timeout
        self.max_per_address = max_per_address
        self.per_address: Counter[str] = Counter()
        self.by_transport: dict[asyncio.BaseTransport, "Guard"] = {}

    def request_started(self, transport: Any) -> None:
        if guard := self.by_transport.get(transport):
            guard.disarm()

    def request_finished(self, transport: Any) -> None:
        if guard := self.by_transport.get(transport):
            guard.arm()


class Guard(asyncio.Protocol):
    def __init__(self, inner: asyncio.Protocol, shared: Connections):
        self.inner = inner
        self.shared = shared
        self.address = "?"
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.address = peer[0] if peer else "?"
        if self.shared.per_address[self.address] >= self.shared.max_per_address:
            logger.warning("router connection refused", address=self.address, reason="too many connections")
            transport.write(BUSY)
            transport.close()
            return
        self.admitted = True
        self.shared.per_address[self.address] += 1
        self.shared.by_transport[transport] = self
        self.arm()
        self.inner.connection_made(transport)

    def arm(self) -> None:
        self.disarm()
        self.timer = asyncio.get_running_loop().call_later(self.shared.header_timeout, self._too_slow)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _too_slow(self) -> None:
        logger.info("router connection closed", address=self.address, reason="request headers too slow")
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        if not self.admitted:
            return
        self.admitted = False
        self.shared.by_transport.pop(self.transport, None)  # type: ignore[arg-type]
        self.shared.per_address[self.address] -= 1
        if self.shared.per_address[self.address] <= 0:
            del self.shared.per_address[self.address]
        self.inner.connection_lost(exc)
