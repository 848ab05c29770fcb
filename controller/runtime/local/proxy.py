"""The router's work on one client connection: each request exchanged with one of the app's replicas.

It all happens in protocol callbacks, without a task or a stream per connection or
per request: the client's bytes arrive in `Client.data_received`, a complete head
starts an `Exchange`, which writes the head to a pooled connection to the app
(upstreams.py) and passes the answer on as its pieces arrive, counting the body to
find its end (http1.py). A routed request then costs the router one parse per head
and a write per piece; a body larger than a few pieces goes through the kernel
alone where it can (splice.py).

Flow control: a client that reads slowly pauses the app's connection (past
HIGH_WATER bytes waiting for the client), and an app that reads a request body
slowly pauses the client's.
"""

from __future__ import annotations

import asyncio
import html
import re
import socket
import random
import time
from typing import TYPE_CHECKING

from controller.runtime.local.connections import BUSY
from controller.runtime.local.http1 import (
    END_OF_HEAD, HOP_BY_HOP, NO_BODY, BadMessage, BodyEnd, Framing, Head, LengthEnd, body_end, page, parse_request,
    parse_response, passed_on, render_head, request_framing, response_framing, valid_host,
)
from controller.runtime.local import splice
from controller.runtime.local.upstreams import Upstream
from core import log

if TYPE_CHECKING:
    from controller.runtime.local.router import Router

logger = log.get("router")

HIGH_WATER = 1024 * 1024  # bytes waiting for the client before the app is paused
HEAD_LIMIT = 64 * 1024
JOIN_LIMIT = 64 * 1024  # a response head and a first piece of body up to this size go out in one write
LINGER_SECONDS = 2.0
SPLICE_AFTER = 256 * 1024  # more of a body than this to come: it passes through the kernel alone (splice.py)
IDEMPOTENT = {b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"}
# Set by the router itself, whatever the client sent (X-Forwarded-For/-Proto keep a trusted proxy's).
REPLACED = frozenset({b"expect", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-request-id"})
# What a client may choose as its request id (Heroku accepts 20 to 200 of these characters).
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9+/=_.:-]{20,200}")
UUID_CLEAR = ~(0xF000 << 64 | 0xC000 << 48)  # the version and variant bits
UUID_V4 = 0x4000 << 64 | 0x8000 << 48
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
NOT_SENT = float("inf")  # Exchange.sent while the router does not wait for the app's answer

UNAVAILABLE_PAGE = """<!doctype html>
<html><head><title>{app} is not available</title></head>
<body><h1>{app} is not available</h1>
<p>The app <strong>{app}</strong> has no process ready to answer right now. If it was just deployed,
it may still be starting; check <code>ps {app}</code> and <code>logs {app}</code>.</p></body></html>
"""
TIMED_OUT_PAGE = """<!doctype html>
<html><head><title>{app} took too long to answer</title></head>
<body><h1>{app} took too long to answer</h1>
<p>The app <strong>{app}</strong> did not begin its answer within {seconds} seconds of receiving the request.
Answer sooner (move long work to a worker process), or raise TERESA_ROUTER_RESPONSE_TIMEOUT.</p></body></html>
"""
UNKNOWN_PAGE = """<!doctype html>
<html><head><title>No such app</title></head>
<body><h1>No such app</h1><p>No app is served at <strong>{host}</strong>.</p></body></html>
"""
BAD_REQUEST = "The request is not valid HTTP/1.1; fix the client that sent it.\n"
BAD_HOST = "The request's Host header is not a host name or address with an optional port; fix the client.\n"
HEAD_TOO_LARGE = "The request's headers are larger than 64 KB; send smaller ones.\n"


def new_request_id() -> str:
    """A random (version 4) UUID, made without uuid.uuid4()'s system call: every request gets one."""
    n = "%032x" % (random.getrandbits(128) & UUID_CLEAR | UUID_V4)
    return f"{n[:8]}-{n[8:12]}-{n[12:16]}-{n[16:20]}-{n[20:]}"


class Client(asyncio.Protocol):
    """One client connection: its requests one after the other (pipelined ones wait their turn)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set by connection_made
        self.peer = "?"
        self.admitted = False
        self.buffer = bytearray()  # received, not yet part of an exchange
        self.searched = 0  # how far the buffer has been searched for the end of a head
        self.exchange: Exchange | None = None
        self.waiting_since = 0.0  # when the router began waiting for the next request's head
        self.ended = False  # the client has sent all it will send
        self.refused = False  # answered with a refusal: closing
        self.full = False  # more than HIGH_WATER bytes wait to be sent to the client
        self._reading = True
        self._advancing = False
        self._linger: asyncio.TimerHandle | None = None

    # -- asyncio's calls

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peername = transport.get_extra_info("peername")
        self.peer = peername[0] if peername else "?"
        if not self.router.connections.admit(self.peer):
            logger.warning("router connection refused", address=self.peer, reason="too many connections")
            self.transport.write(BUSY)
            self.transport.close()
            return
        self.admitted = True
        self.router.clients.add(self)
        # Accepted sockets of socket.create_server() have proto 0, so asyncio leaves Nagle's
        # algorithm on for them: a response's head and body would wait on the client's delayed ACK.
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.set_write_buffer_limits(high=HIGH_WATER)
        self.waiting_since = asyncio.get_running_loop().time()

    def data_received(self, data: bytes) -> None:
        if self.exchange is not None:
            self.exchange.client_data(data)
        elif not self.refused:
            self.buffer += data
            self.advance()

    def eof_received(self) -> bool:
        self.ended = True
        if self.exchange is not None:
            self.exchange.client_ended()
            return True  # the answer can still be sent
        if not self.refused:
            self.advance()
        return self.exchange is not None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted:
            self.admitted = False
            self.router.connections.leave(self.peer)
            self.router.clients.discard(self)
        if self._linger is not None:
            self._linger.cancel()
        if self.exchange is not None:
            self.exchange.client_gone()

    def pause_writing(self) -> None:
        self.full = True
        if self.exchange is not None:
            self.exchange.client_full(True)

    def resume_writing(self) -> None:
        self.full = False
        if self.exchange is not None:
            self.exchange.client_full(False)

    # -- requests

    def advance(self) -> None:
        """Start the next request whose head is complete; the loop (not recursion) takes pipelined ones."""
        if self._advancing:
            return
        self._advancing = True
        try:
            while self.exchange is None and not self.refused and not self.transport.is_closing():
                end = self.buffer.find(END_OF_HEAD, self.searched, HEAD_LIMIT + 4)
                self.searched = 0 if end >= 0 else max(0, len(self.buffer) - 3)
                if end < 0:
                    if len(self.buffer) > HEAD_LIMIT:
                        self.refuse(page(431, HEAD_TOO_LARGE, close=True, content_type="text/plain"))
                    elif self.ended:
                        self.transport.close()
                    return
                raw = bytes(self.buffer[:end + 4])
                del self.buffer[:end + 4]
                self._start(raw)
        finally:
            self._advancing = False

    def _start(self, raw: bytes) -> None:
        try:
            head, method, target = parse_request(raw)
            framing = request_framing(head)
        except BadMessage:
            return self.refuse(page(400, BAD_REQUEST, close=True, content_type="text/plain"))
        if not valid_host(head.get(b"host")):  # `shop.localhost:x@evil.example` would route to shop
            return self.refuse(page(400, BAD_HOST, close=True, content_type="text/plain"))
        Exchange(self, head, method, target, framing).begin()

    def finished(self, keep_alive: bool) -> None:
        """The exchange in flight has ended; the connection serves the next request or closes."""
        self.exchange = None
        if not keep_alive:
            self.transport.close()  # after what is buffered has been sent
            return
        self.waiting_since = asyncio.get_running_loop().time()
        self.read(True)
        self.advance()

    def read(self, on: bool) -> None:
        if on != self._reading and not self.transport.is_closing():
            self._reading = on
            self.transport.resume_reading() if on else self.transport.pause_reading()

    def hold(self, data: bytes) -> None:
        """Keep bytes that came after the current request's head and body, for the next request."""
        self.buffer += data
        if len(self.buffer) > HEAD_LIMIT:
            self.read(False)

    def refuse(self, answer: bytes) -> None:
        """Answer a request the router will not pass on, then close without losing the answer: what the
        client is still sending is read and dropped for a moment first (a close with unread data resets
        the connection, and the client may never see the answer)."""
        self.refused = True
        self.buffer.clear()
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger = asyncio.get_running_loop().call_later(LINGER_SECONDS, self.transport.close)
        self.read(True)
        if self.ended:
            self.transport.close()

    @property
    def _splice(self) -> splice.Splice | None:
        return self.exchange.splice if self.exchange is not None else None

    def held(self) -> int:
        """Bytes of answers the router holds for this client, unsent (its transport's and a splice's)."""
        return self.transport.get_write_buffer_size() + (self._splice.queued if self._splice else 0)

    def lagging(self) -> bool:
        """Whether the client takes answers slower than they come (the app's side then waits)."""
        return self.full or (self._splice is not None and self._splice.waiting)

    def headers_too_slow(self) -> None:
        logger.info("router connection closed", address=self.peer, reason="request headers too slow")
        self.transport.close()


class Exchange:
    """One request: to a replica (retried on another while the app cannot have acted on it) and back."""

    __slots__ = ("client", "router", "head", "method", "target", "framing", "host", "app", "request_id",
                 "status", "keep_alive", "started", "attempts", "retry", "tunnel", "forward", "upstream",
                 "connecting", "request_end", "response_head", "response", "response_end", "dechunk",
                 "tunneling", "done", "splice", "ended_sides", "sent")

    def __init__(self, client: Client, head: Head, method: bytes, target: bytes, framing: Framing) -> None:
        self.client = client
        self.router = client.router
        self.head = head
        self.method = method
        self.target = target
        self.framing = framing
        self.host = head.get(b"host").decode("latin-1")
        self.app: str | None = None
        self.request_id = ""
        self.status = 499  # the client went away first (nginx's number for it)
        self.keep_alive = head.keep_alive
        self.started = time.monotonic()
        self.attempts: list[int] = []
        self.retry = False
        self.tunnel = False  # a WebSocket upgrade
        self.forward = b""  # the head as the app gets it
        self.upstream: Upstream | None = None
        self.connecting: asyncio.Task[None] | None = None
        # The request body, passed on as it arrives (not before the app's connection is there).
        self.request_end: BodyEnd | None = None if framing is NO_BODY else body_end(framing)
        self.response_head = bytearray()  # the start of the app's answer while its head is incomplete
        self.response: Head | None = None
        self.response_end: BodyEnd | None = None
        self.dechunk = False  # chunked answer to an HTTP/1.0 client: the chunks' data only
        self.tunneling = False  # after a 101: bytes both ways
        self.done = False
        self.splice: splice.Splice | None = None
        self.ended_sides = 0  # of a tunnel, the sides that have sent their end
        self.sent = NOT_SENT  # when the app had the whole request and the router began waiting for its answer

    @property
    def body_sent(self) -> bool:
        return self.request_end is None or self.request_end.done

    # -- the way to a replica

    def begin(self) -> None:
        self.client.exchange = self
        app = self.router.app_for_host(self.host)
        if app is None:
            return self.answer(404, UNKNOWN_PAGE.format(host=html.escape(self.host)))
        self.app = app
        given = self.head.get(b"x-request-id").decode("latin-1")
        self.request_id = given if SANE_REQUEST_ID.fullmatch(given) else new_request_id()
        ports = self.router.pick(app)
        if not ports:
            return self.answer(503, UNAVAILABLE_PAGE.format(app=html.escape(app)))
        if self.head.websocket:
            self.tunnel, self.keep_alive, self.attempts = True, False, ports[:1]
        else:
            # A request the app cannot have acted on is tried on the next replica (or once more on the
            # only one: a pooled connection may have just been closed by the app).
            self.retry = self.method in IDEMPOTENT and self.framing is NO_BODY
            self.attempts = ports if len(ports) > 1 or not self.retry else ports * 2
        self.forward = self.router.forward_head(self)
        self.next_attempt()

    def next_attempt(self) -> None:
        if not self.attempts:
            self.keep_alive = False  # a request body may be left unread
            return self.answer(502, UNAVAILABLE_PAGE.format(app=html.escape(self.app or self.host)))
        port = self.attempts.pop(0)
        upstream = None if self.tunnel else self.router.pool.take(port)
        if upstream is not None:
            return self.send(upstream)
        self.connecting = asyncio.get_running_loop().create_task(self.connect(port))

    async def connect(self, port: int) -> None:
        try:
            upstream = await self.router.pool.connect(port)
        except (OSError, TimeoutError) as exc:  # the app never saw the request: the next replica may take it
            logger.debug("upstream refused", app=self.app, port=port, error=type(exc).__name__)
            self.connecting = None
            if not self.done:
                self.next_attempt()
            return
        self.connecting = None
        if self.done:
            upstream.close()
        else:
            self.send(upstream)

    def send(self, upstream: Upstream) -> None:
        self.upstream = upstream
        upstream.receiver = self
        upstream.write(self.forward)
        if self.body_sent:  # none, or an empty one (Content-Length: 0)
            self.sent = time.monotonic()
        if self.client.full:
            self.client_full(True)
        if self.request_end is not None:
            if self.head.get(b"expect").lower() == b"100-continue":
                self.client.transport.write(CONTINUE)
            if self.client.buffer:  # what came with the head, or while connecting (reading paused if much)
                early = bytes(self.client.buffer)
                self.client.buffer.clear()
                self.client.read(True)
                self.client_data(early)

    # -- from the client

    def client_data(self, data: bytes) -> None:
        if self.tunneling:
            assert self.upstream is not None
            return self.upstream.write(data)
        end = self.request_end
        if end is None or end.done or self.upstream is None:
            return self.client.hold(data)
        try:
            used = end.feed(data)
        except BadMessage:
            return self.abort()
        self.upstream.write(data if used == len(data) else data[:used])
        if end.done:
            self.sent = time.monotonic()
        if used < len(data):
            self.client.hold(data[used:])

    def client_ended(self) -> None:
        """The client sent its end (a half close): passed on through a tunnel; a request body cut short
        ends this exchange; else the answer goes out, and so do those of requests already sent."""
        if self.tunneling:
            self.tunnel_ended(client=True)
        elif self.request_end is not None and not self.request_end.done:
            self.abort()

    def client_gone(self) -> None:
        if self.connecting is not None:
            self.connecting.cancel()
        self.keep_alive = False
        self.finish(reusable=False, client_alive=False)

    def client_full(self, full: bool) -> None:
        if self.upstream is not None and self.upstream.transport is not None and not self.upstream.broken:
            self.upstream.transport.pause_reading() if full else self.upstream.transport.resume_reading()

    # -- from the app

    def app_data(self, data: bytes) -> None:
        if self.tunneling:
            return self.client.transport.write(data)
        if self.response_end is not None:
            return self.body(data)
        rest: bytes | None = data
        while rest:  # the head, after any interim answers
            rest = self._response_head(rest)

    def _response_head(self, data: bytes) -> bytes | None:
        """Take the answer's head from `data` as it completes; what follows it, or None when there is
        no more to do with `data` (the head incomplete, or the exchange moved on)."""
        searched = max(0, len(self.response_head) - 3)
        if self.response_head:
            self.response_head += data
            data = bytes(self.response_head)
        end = data.find(END_OF_HEAD, searched)
        if end < 0:
            if len(data) > HEAD_LIMIT:
                self.unanswered(BadMessage("response head too large"))
            else:
                self.response_head[:] = data
            return None
        self.response_head.clear()
        raw, rest = data[:end + 4], data[end + 4:]
        try:
            response, status = parse_response(raw)
            framing = response_framing(response, status, self.method, tunnel=self.tunnel)
        except BadMessage as exc:
            self.unanswered(exc)
            return None
        if 100 <= status < 200 and status != 101:  # interim: passed on, the answer follows
            self.client.transport.write(raw)
            return rest or None
        self.status, self.response = status, response
        self.sent = NOT_SENT  # answered: a slow body is the app's to pace
        self.response_end = body_end(framing)
        if self.tunnel:
            self.upgraded(raw, rest)
            return None
        self.body(rest, self.client_head(response, framing))
        return None

    def body(self, piece: bytes, head: bytes = b"") -> None:
        """Pass on a piece of the answer's body (after its head, the first time)."""
        end = self.response_end
        assert end is not None and self.response is not None
        try:
            if self.dechunk:
                payload: list[bytes] = []
                used = end.feed(piece, payload)
                out = b"".join(payload)
            else:
                used = end.feed(piece)
                out = piece if used == len(piece) else piece[:used]
        except BadMessage:
            return self.abort()
        if head:
            if len(out) <= JOIN_LIMIT:
                out = head + out
            else:
                self.client.transport.write(head)
        if out:
            self.client.transport.write(out)
        if end.done:
            self.finish(reusable=used == len(piece) and self.response.keep_alive)
        elif not (isinstance(end, LengthEnd) and end.left is not None and end.left < SPLICE_AFTER):
            self.try_splice()  # more to come of a chunked body, one that ends with the connection, or a long one

    def try_splice(self) -> None:
        """The rest of a large body through the kernel alone, once nothing waits to be sent to the client."""
        upstream, end = self.upstream, self.response_end
        if (splice.AVAILABLE and not self.dechunk and upstream is not None and upstream.transport is not None
                and end is not None and not self.client.transport.get_write_buffer_size()
                and not self.client.transport.is_closing() and not upstream.transport.is_closing()):
            try:
                self.splice = splice.Splice(upstream.transport, self.client.transport, end, self.spliced)
            except OSError as exc:  # out of descriptors, say: the body goes on through Python
                logger.warning("router splice not set up", app=self.app, error=str(exc))

    def spliced(self, exc: Exception | None, clean: bool) -> None:
        self.splice = None
        assert self.response is not None
        if exc is not None:
            logger.debug("response cut short", app=self.app, error=str(exc))
            return self.abort()
        if self.response_end is not None and self.response_end.until_close:
            return self.finish(reusable=False)  # it ended with the app's connection
        self.finish(reusable=clean and self.response.keep_alive)

    def upgraded(self, raw: bytes, rest: bytes) -> None:
        """The app's answer to a WebSocket upgrade: after a 101, bytes both ways until either ends;
        otherwise its refusal as it framed it, and the connection closes."""
        self.client.transport.write(raw)
        if self.status != 101:
            return self.body(rest)
        self.tunneling = True
        assert self.upstream is not None
        if rest:
            self.client.transport.write(rest)
        if self.client.buffer:
            self.upstream.write(bytes(self.client.buffer))
            self.client.buffer.clear()
        self.client.read(True)
        if self.client.ended:  # the client's end came before the app's answer
            self.tunnel_ended(client=True)

    def tunnel_ended(self, *, client: bool) -> bool:
        """One side of a tunnel has sent its end: passed on to the other, which may still send; the
        tunnel closes when both have ended. Whether the side that ended stays open."""
        other = self.upstream.transport if client and self.upstream is not None else self.client.transport
        if other is not None and not other.is_closing() and other.can_write_eof():
            other.write_eof()
        self.ended_sides += 1
        if self.ended_sides == 2:
            self.finish(reusable=False)
            return False
        return True

    def app_ended(self, exc: Exception | None) -> bool:
        """The app's connection has ended (exc None: its half close); whether to keep it half open."""
        if self.done:
            return False
        if self.tunneling:
            if exc is None and self.upstream is not None and not self.upstream.lost:
                return self.tunnel_ended(client=False)
            self.finish(reusable=False)
            return False
        if self.response_end is None:
            self.unanswered(exc or ConnectionResetError("the app closed the connection"))
        elif self.response_end.until_close:
            self.finish(reusable=False)  # a body that ends with the connection: it has
        else:
            self.abort()  # the answer was cut short: so is the client's
        return False

    def app_full(self, full: bool) -> None:
        self.client.read(not full)

    # -- endings

    def timed_out(self) -> None:
        """The app has had the whole request for the router's response timeout and not begun to answer
        (Heroku's H12): the client gets a 503 and the app's connection is closed; it may still act on it."""
        logger.info("router request timed out", app=self.app, port=self.upstream and self.upstream.port,
                    seconds=self.router.response_timeout, request_id=self.request_id)
        self.answer(503, TIMED_OUT_PAGE.format(app=html.escape(self.app or self.host),
                                               seconds=f"{self.router.response_timeout:g}"))

    def unanswered(self, exc: Exception) -> None:
        """The app closed or broke the connection before any of its answer reached the client."""
        logger.debug("upstream failed", app=self.app, port=self.upstream and self.upstream.port, error=str(exc))
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
        self.response_head.clear()  # the start of the dead attempt's answer is not the next one's
        if not self.retry:
            self.attempts = []
        self.next_attempt()

    def answer(self, status: int, body: str) -> None:
        """A page of the router's own; the connection is kept only if no request body is left unread."""
        self.keep_alive = self.keep_alive and self.body_sent
        self.status = status
        self.client.transport.write(page(status, body, close=not self.keep_alive))
        self.finish(reusable=False)

    def abort(self) -> None:
        """Either side broke off mid-way: both connections end, the answer cut short."""
        self.keep_alive = False
        self.client.transport.close()
        self.finish(reusable=False)

    def finish(self, *, reusable: bool, client_alive: bool = True) -> None:
        if self.done:
            return
        self.done = True
        if self.splice is not None:
            self.splice.close()
            self.splice = None
        body_sent = self.body_sent
        if self.upstream is not None:
            upstream, self.upstream = self.upstream, None
            self.router.pool.release(upstream) if reusable and body_sent and not self.tunnel else upstream.close()
        try:
            if self.app is not None:
                self.router.log_access(self)
        except Exception as exc:  # a full disk, say: the connection goes on without its access line
            logger.warning("router access line not written", app=self.app, error=str(exc))
        if client_alive:
            self.client.finished(self.keep_alive and body_sent)

    # -- heads

    def client_head(self, response: Head, framing: Framing) -> bytes:
        """The answer's head as the client gets it; and how its body goes (to an HTTP/1.0 client, a chunked
        body's data only, ended by the connection's close) and whether the connection stays."""
        self.dechunk = framing.chunked and self.head.version == b"HTTP/1.0"
        self.keep_alive &= not (framing.until_close or self.dechunk)
        if (self.keep_alive and response.version == b"HTTP/1.1" and self.head.version == b"HTTP/1.1"
                and not response.has_any(HOP_BY_HOP)):
            return response.raw  # nothing to take out or add (most answers): as the app sent it
        headers = passed_on(response, chunked=framing.chunked and not self.dechunk)
        if not self.keep_alive:
            headers.append((b"Connection", b"close"))
        elif self.head.version == b"HTTP/1.0":
            headers.append((b"Connection", b"keep-alive"))
        return render_head(b"HTTP/1.1" + response.first[8:], headers)
