"""Blocking read/write for dulwich's protocol handlers over asyncssh's async streams.

dulwich's handlers are synchronous, so they run in a worker thread; these
callables hop onto the event loop for each chunk of I/O.
"""

from __future__ import annotations

import asyncio
from typing import Any

CHUNK = 256 * 1024


class ThreadStreams:
    def __init__(self, loop: asyncio.AbstractEventLoop, reader: Any, writer: Any, limit: int | None = None):
        self.loop = loop
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray()
        self.eof = False
        self.received = 0
        self.limit = limit

    def _fill(self, wanted: int) -> None:
        while len(self.buffer) < wanted and not self.eof:
            chunk = asyncio.run_coroutine_threadsafe(self.reader.read(CHUNK), self.loop).result()
            if not chunk:
                self.eof = True
            self.received += len(chunk)
            self.buffer += chunk

    def read(self, size: int = -1) -> bytes:
        """Exactly `size` bytes, fewer only at end of input."""
        self._fill(size)
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def recv(self, size: int) -> bytes:
        """Up to `size` bytes, whatever is available."""
        self._fill(1)
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def write(self, data: bytes) -> None:
        async def send() -> None:
            self.writer.write(data)
            await self.writer.drain()

        asyncio.run_coroutine_threadsafe(send(), self.loop).result()
