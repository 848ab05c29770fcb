"""A response body straight from the app's connection to the client's, without asyncio's streams.

Through a StreamReader every piece of a body is copied twice in Python (into the
reader's buffer, out of it) and wakes the relaying task once. For a body of known
framing the router instead lends the app connection's transport a protocol of its
own (`Passthrough`) while the body passes: each piece the transport receives is
written to the client's transport at once, its end found by counting (a length, or
`ChunkedEnd` over the size lines), and the app is paused while the client lags.
The StreamReaderProtocol gets the transport back afterwards, for the next request.

Two private attributes of asyncio.StreamReader are used, `_buffer` (bytes of the
body that arrived with the head) and `_paused`; both are as in every Python since 3.4.
"""

from __future__ import annotations

import asyncio
from typing import cast

from controller.runtime.local.http1 import ChunkedEnd, Framing

HIGH_WATER = 1024 * 1024  # bytes waiting for the client before the app is paused


class Passthrough(asyncio.Protocol):
    def __init__(self, framing: Framing, client: asyncio.WriteTransport, app: asyncio.Transport,
                 original: asyncio.BaseProtocol) -> None:
        self.left = framing.length
        self.chunks = ChunkedEnd() if framing.chunked else None
        self.client = client
        self.app = app
        self.original = original
        loop = asyncio.get_running_loop()
        self.done: asyncio.Future[bool] = loop.create_future()  # True: nothing came after the body
        self.lagging: asyncio.Future[None] = loop.create_future()
        self.extra = False

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            self.extra = True  # after the body: the connection is not clean
            return
        if self.client.is_closing():  # the client has gone: stop passing the body
            self.done.set_exception(ConnectionResetError("the client closed its connection"))
            return
        try:
            used = self._body_part(data)
        except ValueError as exc:
            self.done.set_exception(exc)
            return
        self.client.write(data if used == len(data) else data[:used])
        if self.left == 0 and (self.chunks is None or self.chunks.done):
            self.done.set_result(used == len(data))
        elif self.client.get_write_buffer_size() > HIGH_WATER and not self.lagging.done():
            self.app.pause_reading()
            self.lagging.set_result(None)

    def _body_part(self, data: bytes) -> int:
        if self.chunks is not None:
            return self.chunks.feed(data)
        used = min(self.left, len(data))
        self.left -= used
        return used

    def eof_received(self) -> bool:
        self._cut_short(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._cut_short(exc)
        self.original.connection_lost(exc)

    def _cut_short(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or asyncio.IncompleteReadError(b"", None))

    # The request body may still be on its way to the app: its writer's flow control is the original's.
    def pause_writing(self) -> None:
        self.original.pause_writing()

    def resume_writing(self) -> None:
        self.original.resume_writing()


async def pass_body(framing: Framing, app: asyncio.StreamReader, app_transport: asyncio.Transport,
                    client: asyncio.StreamWriter) -> bool:
    """Relay a response body of a length or chunked; whether the app's connection is clean after it."""
    original = app_transport.get_protocol()
    relay = Passthrough(framing, client.transport, app_transport, original)
    buffered: bytearray = app._buffer  # type: ignore[attr-defined]
    early, paused = bytes(buffered), app._paused  # type: ignore[attr-defined]
    buffered.clear()
    app_transport.set_protocol(relay)
    try:
        if early:
            relay.data_received(early)
        if paused:
            app._paused = False  # type: ignore[attr-defined]
            app_transport.resume_reading()
        while not relay.done.done():
            waiting: set[asyncio.Future[object]] = {cast("asyncio.Future[object]", relay.done),
                                                    cast("asyncio.Future[object]", relay.lagging)}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if relay.lagging.done() and not relay.done.done():
                await client.drain()
                relay.lagging = asyncio.get_running_loop().create_future()
                app_transport.resume_reading()
        return relay.done.result() and not relay.extra
    finally:
        if not app_transport.is_closing():
            app_transport.set_protocol(original)
