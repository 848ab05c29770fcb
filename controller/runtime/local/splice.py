"""A large response body from the app's socket to the client's through the kernel alone (Linux splice).

Passed through Python, every byte of a body is received into a new bytes object
and sent again: for a 10 MB answer that is most of the router's time. While a
body of known framing passes, `Splice` instead moves it app socket -> pipe ->
client socket with splice(2), the bytes never leaving the kernel. Only a chunked
body's framing (size lines, the CRLF after each chunk, trailers) is read, by
peeking, to find its end and check it; it is then spliced with the data it frames.

The sockets stay owned by their asyncio transports: the splice works on
duplicates of their descriptors while the app's transport is paused (so it reads
nothing) and the client's has nothing buffered (so nothing is sent out of order),
and gives both back when the body has passed.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
from typing import Callable

from controller.runtime.local.http1 import BodyEnd, ChunkedEnd, LengthEnd

AVAILABLE = hasattr(os, "splice")
PIPE_SIZE = 1024 * 1024
PEEK = 64  # bytes peeked at for a chunk's framing (a longer size line is read in several peeks)
FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

# (None, whether the app's connection is clean after the body) when the whole body passed; else (why not, False)
Done = Callable[[Exception | None, bool], None]
CUT_SHORT = "the app closed the connection in the middle of the body"


class Splice:
    def __init__(self, app: asyncio.Transport, client: asyncio.Transport, end: BodyEnd, done: Done) -> None:
        self.loop = asyncio.get_running_loop()
        self.app = app
        self.end = end
        self.done = done
        opened: list[int] = []
        try:  # (each may fail with EMFILE: then what was opened is closed, and the caller passes the body)
            opened.append(os.dup(app.get_extra_info("socket").fileno()))
            opened.append(os.dup(client.get_extra_info("socket").fileno()))
            opened.extend(os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC))
        except OSError:
            for fd in opened:
                os.close(fd)
            raise
        self.source = socket.socket(fileno=opened[0])
        self.target, self.pipe_out, self.pipe_in = opened[1:]
        try:
            self.room = fcntl.fcntl(self.pipe_in, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # over the user's pipe limit: the default size
            self.room = 65536
        self.queued = 0  # bytes in the pipe
        self.framing_left = 0  # bytes of chunk framing already read (peeked at), still to be spliced
        self.waiting = False  # the client is not taking more: the app's side waits until it does
        self.failed: Exception | None = None  # the app's end came before the body's: sent on, then failed
        self.closed = False
        app.pause_reading()
        self.loop.add_reader(self.source.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            while not self._complete():
                if self.queued >= self.room and not self._flush():
                    return  # the client is not taking more for now: _writable goes on
                if not self._take():
                    break
            if self._flush() and self._complete():
                self._finish(self.failed)
        except Exception as exc:  # a socket error on either side, or a chunk size line that is not one
            self._finish(exc)

    def _complete(self) -> bool:
        return self.failed is not None or (self.end.done and not self.framing_left)

    def _take(self) -> bool:
        """Move the next part of the body into the pipe; False when the app has nothing more for now."""
        end = self.end
        if isinstance(end, ChunkedEnd) and not end.left and not self.framing_left and not self._framing(end):
            return False
        room = self.room - self.queued
        want = room if end.left is None else min(self.framing_left + end.left, room)  # (None: until close)
        try:
            moved = os.splice(self.source.fileno(), self.pipe_in, want, flags=FLAGS)
        except BlockingIOError:  # nothing to read, or the pipe is full
            return False
        if moved == 0:
            if end.left is None:  # a body that ends with the connection has ended
                end.done = True
            else:
                self.failed = ConnectionResetError(CUT_SHORT)  # what came before it still goes to the client
            return False
        self.queued += moved
        of_framing = min(moved, self.framing_left)
        self.framing_left -= of_framing
        if moved > of_framing:
            end.skip(moved - of_framing)
        return True

    def _framing(self, end: ChunkedEnd) -> bool:
        """Read (peek at) what comes before the next chunk's data: the CRLF ending the last one, a size
        line, or trailers. It is checked by ChunkedEnd, then spliced with the data that follows."""
        try:
            peeked = self.source.recv(PEEK, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        if not peeked:
            self.failed = ConnectionResetError(CUT_SHORT)
            return False
        self.framing_left = end.feed(peeked, until_data=True)  # a line cut short: ChunkedEnd keeps its start
        return True

    def _flush(self) -> bool:
        """Send what is in the pipe; False when the client cannot take it all now (then on writable)."""
        while self.queued:
            try:
                sent = os.splice(self.pipe_out, self.target, self.queued, flags=FLAGS)
            except BlockingIOError:
                self.waiting = True
                self.loop.remove_reader(self.source.fileno())
                self.loop.add_writer(self.target, self._writable)
                return False
            self.queued -= sent
        return True

    def _writable(self) -> None:
        try:
            if not self._flush():
                return
        except Exception as exc:
            return self._finish(exc)
        self.loop.remove_writer(self.target)
        self.waiting = False
        if self._complete():
            return self._finish(self.failed)
        self.loop.add_reader(self.source.fileno(), self._readable)

    def _finish(self, exc: Exception | None) -> None:
        clean = exc is None and self._nothing_after()
        if self.close():
            self.done(exc, clean)

    def _nothing_after(self) -> bool:
        """Whether the app sent nothing past the body (bytes there would be taken for the next answer)."""
        try:
            return not self.source.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) and False
        except BlockingIOError:
            return True

    def close(self) -> bool:
        """Give the sockets back to their transports; False if that was done already."""
        if self.closed:
            return False
        self.closed = True
        self.loop.remove_reader(self.source.fileno())
        self.loop.remove_writer(self.target)
        self.source.close()
        for fd in (self.target, self.pipe_out, self.pipe_in):
            os.close(fd)
        if not self.app.is_closing():
            self.app.resume_reading()
        return True
