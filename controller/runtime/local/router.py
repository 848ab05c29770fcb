"""The HTTP router: Host header -> app -> one of its ready web replicas, streamed both ways.

Like Heroku's router it tells the app who asked: X-Forwarded-For/-Proto/-Host
(an incoming X-Forwarded-For or -Proto is kept only from TERESA_TRUSTED_PROXIES,
else replaced) and an X-Request-Id (kept when the client sent a sane one, else
made), and it writes one access line per request into the app's logs.

It is a lean asyncio HTTP/1.1 proxy rather than aiohttp's client and server:
every request is on the path between a user and an app, and aiohttp's parsing
and re-framing on both sides made a routed request cost three times a direct one
(bench/router.py). Here heads are parsed once, bodies are copied in pieces with
their framing passed through (http1.py), and connections to the replicas are
kept alive and reused (upstreams.py). WebSocket upgrades become a byte tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import ipaddress
import itertools
import re
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Sequence, cast

from controller.runtime.local.connections import BUSY, Connections
from controller.runtime.local.http1 import (
    CHUNK, END_OF_HEAD, NO_BODY, BadMessage, Framing, Head, page, parse_request, parse_response, pipe_both,
    relay_body, render_head, request_framing, response_framing,
)
from controller.runtime.local.passthrough import pass_body
from controller.runtime.local.probes import HOST
from controller.runtime.local.upstreams import IDLE_SECONDS, Pool, Upstream
from core import log
from core.config import ConfigError, Network

logger = log.get("router")

IDEMPOTENT = {b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"}
HEAD_LIMIT = 64 * 1024
LINGER_SECONDS = 2.0
# Set by the router itself, whatever the client sent (X-Forwarded-For/-Proto keep a trusted proxy's).
REPLACED = frozenset({b"expect", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-request-id"})
# What a client may choose as its request id (Heroku accepts 20 to 200 of these characters).
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9+/=_.:-]{20,200}")

UNAVAILABLE_PAGE = """<!doctype html>
<html><head><title>{app} is not available</title></head>
<body><h1>{app} is not available</h1>
<p>The app <strong>{app}</strong> has no process ready to answer right now. If it was just deployed,
it may still be starting; check <code>ps {app}</code> and <code>logs {app}</code>.</p></body></html>
"""
UNKNOWN_PAGE = """<!doctype html>
<html><head><title>No such app</title></head>
<body><h1>No such app</h1><p>No app is served at <strong>{host}</strong>.</p></body></html>
"""
BAD_REQUEST = "The request is not valid HTTP/1.1; fix the client that sent it.\n"
HEAD_TOO_LARGE = "The request's headers are larger than 64 KB; send smaller ones.\n"


class Unanswered(Exception):
    """The app closed or broke the connection before any of its response reached the client."""


@dataclass
class Request:
    head: Head
    method: bytes
    target: bytes
    framing: Framing
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: str
    host: str
    request_id: str = ""
    status: int = 499  # the client went away first (nginx's number for it)
    keep_alive: bool = True


Backends = Callable[[str], list[int]]
AccessLog = Callable[[str, str], None]  # (app, line)


def _no_access_log(app: str, line: str) -> None:
    pass


class Router:
    def __init__(self, domain: str, backends: Backends, *, trusted_proxies: Sequence[Network] = (),
                 access_log: AccessLog = _no_access_log, header_timeout: float = 15.0,
                 max_connections_per_address: int = 256) -> None:
        self.domain = domain.lower().strip(".")
        self.backends = backends
        self.trusted_proxies = tuple(trusted_proxies)
        self.access_log = access_log
        self.connections = Connections(header_timeout, max_connections_per_address)
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._pool = Pool(HOST)
        self._clients: set[asyncio.StreamWriter] = set()
        self.apps: set[str] = set()
        self.custom_domains: dict[str, str] = {}
        self._turn: dict[str, itertools.count[int]] = {}
        self.port: int | None = None

    # -- routing table

    def add_app(self, app: str) -> None:
        self.apps.add(app)

    def remove_app(self, app: str) -> None:
        self.apps.discard(app)
        self.set_domains(app, ())

    def set_domains(self, app: str, domains: tuple[str, ...] | list[str]) -> None:
        self.custom_domains = {d: a for d, a in self.custom_domains.items() if a != app}
        self.custom_domains.update({d.lower().strip("."): app for d in domains})

    def app_for_host(self, host: str) -> str | None:
        name = _strip_port(host).lower().strip(".")
        if name in self.custom_domains:
            return self.custom_domains[name]
        app, dot, rest = name.partition(".")
        if dot and rest == self.domain and app in self.apps:
            return app
        return None

    def pick(self, app: str) -> list[int]:
        """The app's ready ports, rotated so each request starts at the next one."""
        ports = self.backends(app)
        if not ports:
            return []
        start = next(self._turn.setdefault(app, itertools.count())) % len(ports)
        return ports[start:] + ports[:start]

    # -- server

    async def start(self, addr: tuple[str, int]) -> None:
        try:
            sock = socket.create_server(addr)
        except OSError as exc:
            raise ConfigError(f"The router cannot listen on {addr[0]}:{addr[1]} ({exc.strerror}); "
                              "set TERESA_ROUTER_ADDR to a free address.") from None
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._serve, sock=sock, limit=HEAD_LIMIT)
        self._sweeper = asyncio.create_task(self._sweep())
        logger.info("router listening", addr=f"{addr[0]}:{self.port}", domain=self.domain)

    async def stop(self) -> None:
        if self._server:
            self._server.close()
        if self._sweeper:
            self._sweeper.cancel()
        for writer in list(self._clients):
            writer.transport.abort()
        self._pool.close()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(IDLE_SECONDS)
            self._pool.sweep()

    def trusted(self, peer: str | None) -> bool:
        if not self.trusted_proxies:
            return False
        try:
            address = ipaddress.ip_address(peer or "")
        except ValueError:
            return False
        return any(address in network for network in self.trusted_proxies)

    # -- one client connection: requests one after the other

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = peername[0] if peername else "?"
        if not self.connections.admit(peer):
            logger.warning("router connection refused", address=peer, reason="too many connections")
            writer.write(BUSY)
            writer.close()
            return
        self._clients.add(writer)
        # Accepted sockets of socket.create_server() have proto 0, so asyncio leaves Nagle's
        # algorithm on for them: a response's head and body would wait on the client's delayed ACK.
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while await self._next(reader, writer, peer):
                pass
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, BadMessage, TimeoutError):
            pass  # either side broke off mid-way: this connection ends, the response cut short
        finally:
            self.connections.leave(peer)
            self._clients.discard(writer)
            writer.close()

    async def _next(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> bool:
        """Serve the connection's next request; whether the connection stays open for another."""
        try:
            async with asyncio.timeout(self.connections.header_timeout):
                raw = await reader.readuntil(END_OF_HEAD)
        except TimeoutError:
            logger.info("router connection closed", address=peer, reason="request headers too slow")
            return False
        except asyncio.LimitOverrunError:
            return await _refuse(reader, writer, page(431, HEAD_TOO_LARGE, close=True, content_type="text/plain"))
        try:
            head, method, target = parse_request(raw)
            framing = request_framing(head)
        except BadMessage:
            return await _refuse(reader, writer, page(400, BAD_REQUEST, close=True, content_type="text/plain"))
        host = head.get(b"host").decode("latin-1")
        request = Request(head, method, target, framing, reader, writer, peer, host,
                          keep_alive=head.keep_alive and framing is NO_BODY)
        app = self.app_for_host(host)
        if app is None:
            self._answer(request, 404, UNKNOWN_PAGE.format(host=html.escape(host)))
            return request.keep_alive
        given = head.get(b"x-request-id").decode("latin-1")
        request.request_id = given if SANE_REQUEST_ID.fullmatch(given) else str(uuid.uuid4())
        started = time.monotonic()
        try:
            await self._route(request, app)
        finally:
            self._log_access(request, app, time.monotonic() - started)
        await writer.drain()
        return request.keep_alive

    def _answer(self, request: Request, status: int, body: str) -> None:
        """A page of the router's own; the connection is kept only if no request body is left unread."""
        request.keep_alive = request.keep_alive and request.framing is NO_BODY
        request.status = status
        request.writer.write(page(status, body, close=not request.keep_alive))

    def _log_access(self, request: Request, app: str, seconds: float) -> None:
        path = request.target.decode("latin-1")
        path = path if len(path) <= 500 else path[:500] + "..."
        self.access_log(app, f"method={request.method.decode()} path=\"{path}\" status={request.status} "
                             f"service={seconds * 1000:.0f}ms request_id={request.request_id} "
                             f"fwd=\"{request.peer}\"")

    # -- to the app

    async def _route(self, request: Request, app: str) -> None:
        ports = self.pick(app)
        if not ports:
            return self._answer(request, 503, UNAVAILABLE_PAGE.format(app=html.escape(app)))
        if request.head.get(b"upgrade").lower() == b"websocket":
            return await self._tunnel(request, ports[0])
        # A request the app cannot have acted on is tried on the next replica (or once
        # more on the only one: a pooled connection may have just been closed by the app).
        retry = request.method in IDEMPOTENT and request.framing is NO_BODY
        attempts = (ports if len(ports) > 1 else ports * 2) if retry else ports[:1]
        head = self._forward_head(request)
        for port in attempts:
            try:
                upstream = await self._pool.acquire(port)
            except (OSError, TimeoutError) as exc:
                logger.debug("upstream refused", app=app, port=port, error=type(exc).__name__)
                continue
            try:
                return await self._exchange(request, port, upstream, head)
            except Unanswered as exc:
                upstream.close()
                logger.debug("upstream failed", app=app, port=port, error=str(exc.__cause__ or exc))
        request.keep_alive = False  # its body may be half sent
        self._answer(request, 502, UNAVAILABLE_PAGE.format(app=html.escape(app)))

    async def _exchange(self, request: Request, port: int, upstream: Upstream, head: bytes) -> None:
        upstream.writer.write(head)
        sending = None
        if request.framing is not NO_BODY:
            if request.head.get(b"expect").lower() == b"100-continue":
                request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            sending = asyncio.ensure_future(relay_body(request.framing, request.reader, upstream.writer))
        try:
            response, status = await _response_head(upstream, request.writer)
            framing = response_framing(response, status, request.method)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, BadMessage) as exc:
            if sending:
                sending.cancel()
            raise Unanswered() from exc
        request.status = status
        try:
            dechunk = framing.chunked and request.head.version == b"HTTP/1.0"
            request.keep_alive &= not (framing.until_close or dechunk)
            head = self._client_head(request, response, framing, dechunk)
            clean = True
            if framing.until_close or dechunk:
                request.writer.write(head)
                await relay_body(framing, upstream.reader, request.writer, dechunk=dechunk)
            elif framing.chunked or framing.length > CHUNK:
                request.writer.write(head)
                transport = cast(asyncio.Transport, upstream.writer.transport)
                clean = await pass_body(framing, upstream.reader, transport, request.writer)
            else:  # a small body: with its head in one write
                request.writer.write(head + await upstream.reader.readexactly(framing.length))
            reusable = clean and response.keep_alive and not framing.until_close
            if sending is not None:
                reusable &= await _finished(sending)
                request.keep_alive &= reusable
        except BaseException:
            upstream.close()
            if sending:
                sending.cancel()
            request.keep_alive = False
            raise
        self._pool.release(port, upstream) if reusable else upstream.close()

    async def _tunnel(self, request: Request, port: int) -> None:
        """A WebSocket upgrade: the app's answer passed on; after a 101, bytes both ways until both end."""
        request.keep_alive = False
        try:
            upstream = await self._pool.connect(port)
        except (OSError, TimeoutError):
            return self._answer(request, 502, UNAVAILABLE_PAGE.format(app=html.escape(request.host)))
        try:
            upstream.writer.write(self._forward_head(request, upgrade=True))
            raw = await upstream.reader.readuntil(END_OF_HEAD)
            response, request.status = parse_response(raw)
            request.writer.write(raw)
            if request.status == 101:
                await pipe_both(request.reader, request.writer, upstream.reader, upstream.writer)
            else:  # refused: its answer as the app framed it
                framing = response_framing(response, request.status, request.method)
                await relay_body(framing, upstream.reader, request.writer)
        finally:
            upstream.close()

    def _forward_head(self, request: Request, *, upgrade: bool = False) -> bytes:
        head = request.head
        skip = head.not_forwarded() | REPLACED
        headers = [(name, value) for name, value in head.headers if name.lower() not in skip]
        if request.framing.chunked:
            headers.append((b"Transfer-Encoding", b"chunked"))
        if upgrade:
            headers += [(b"Connection", b"Upgrade"), (b"Upgrade", head.get(b"upgrade"))]
        trusted = self.trusted(request.peer)
        previous = b", ".join(head.values(b"x-forwarded-for")) if trusted else b""
        peer = request.peer.encode()
        proto = head.get(b"x-forwarded-proto") if trusted else b""
        headers += [
            (b"X-Forwarded-For", previous + b", " + peer if previous else peer),
            (b"X-Forwarded-Proto", proto if proto in (b"http", b"https") else b"http"),
            (b"X-Forwarded-Host", request.host.encode("latin-1")),
            (b"X-Request-Id", request.request_id.encode()),
        ]
        return render_head(request.method + b" " + request.target + b" HTTP/1.1", headers)

    @staticmethod
    def _client_head(request: Request, response: Head, framing: Framing, dechunk: bool) -> bytes:
        skip = response.not_forwarded()
        headers = [(name, value) for name, value in response.headers if name.lower() not in skip]
        if framing.chunked and not dechunk:
            headers.append((b"Transfer-Encoding", b"chunked"))
        if not request.keep_alive:
            headers.append((b"Connection", b"close"))
        elif request.head.version == b"HTTP/1.0":
            headers.append((b"Connection", b"keep-alive"))
        return render_head(b"HTTP/1.1" + response.first[8:], headers)


async def _refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: bytes) -> bool:
    """Answer a request the router will not pass on, then close without losing the answer: what the
    client is still sending is read and dropped for a moment first (a close with unread data resets
    the connection, and the client may never see the answer)."""
    writer.write(answer)
    if writer.can_write_eof():
        writer.write_eof()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(LINGER_SECONDS):
            while await reader.read(CHUNK):
                pass
    return False


async def _response_head(upstream: Upstream, client: asyncio.StreamWriter) -> tuple[Head, int]:
    """The app's response head, after passing any interim (1xx) responses on to the client."""
    while True:
        raw = await upstream.reader.readuntil(END_OF_HEAD)
        response, status = parse_response(raw)
        if not 100 <= status < 200 or status == 101:
            return response, status
        client.write(raw)


async def _finished(sending: asyncio.Future[None]) -> bool:
    """Whether the request body went to the app whole (cut off when the app answered without it)."""
    if not sending.done():
        sending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sending
    return not sending.cancelled() and sending.exception() is None


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host
