"""The HTTP router: Host header -> app -> one of its ready web replicas, streamed both ways.

Like Heroku's router it tells the app who asked: X-Forwarded-For/-Proto/-Host
(an incoming X-Forwarded-For or -Proto is kept only from TERESA_TRUSTED_PROXIES,
else replaced) and an X-Request-Id (kept when the client sent a sane one, else
made), and it writes one access line per request into the app's logs.
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import itertools
import re
import socket
import time
import uuid
from typing import Callable, Sequence

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from controller.runtime.local.probes import HOST
from core import log
from core.config import ConfigError, Network

logger = log.get("router")

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "proxy-connection",
}
# Handled by the router itself rather than passed on.
NOT_FORWARDED = HOP_BY_HOP | {"expect"}
IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}
CHUNK = 64 * 1024
STARTED = "teresa.response_started"
# Either end of a proxied WebSocket: the client's (server side) or the app's (client side).
WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse
REQUEST_ID = "teresa.request_id"
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

Backends = Callable[[str], list[int]]
AccessLog = Callable[[str, str], None]  # (app, line)


def _no_access_log(app: str, line: str) -> None:
    pass


class Router:
    def __init__(self, domain: str, backends: Backends, *, trusted_proxies: Sequence[Network] = (),
                 access_log: AccessLog = _no_access_log) -> None:
        self.domain = domain.lower().strip(".")
        self.backends = backends
        self.trusted_proxies = tuple(trusted_proxies)
        self.access_log = access_log
        self.apps: set[str] = set()
        self.custom_domains: dict[str, str] = {}
        self._turn: dict[str, itertools.count[int]] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
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
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        server = web.Application()
        server.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(server, access_log=None, handle_signals=False)
        await self._runner.setup()
        try:
            sock = socket.create_server(addr)
        except OSError as exc:
            raise ConfigError(f"The router cannot listen on {addr[0]}:{addr[1]} ({exc.strerror}); "
                              "set TERESA_ROUTER_ADDR to a free address.") from None
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        logger.info("router listening", addr=f"{addr[0]}:{self.port}", domain=self.domain)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
        if self._session:
            await self._session.close()

    def trusted(self, peer: str | None) -> bool:
        try:
            address = ipaddress.ip_address(peer or "")
        except ValueError:
            return False
        return any(address in network for network in self.trusted_proxies)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        app = self.app_for_host(request.host)
        if app is None:
            return web.Response(status=404, text=UNKNOWN_PAGE.format(host=html.escape(request.host)),
                                content_type="text/html")
        given = request.headers.get("X-Request-Id", "")
        request[REQUEST_ID] = given if SANE_REQUEST_ID.fullmatch(given) else str(uuid.uuid4())
        started = time.monotonic()
        status = 499  # the client went away first (nginx's number for it)
        try:
            response = await self._route(request, app)
            status = response.status
            return response
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError):
            status = 502
            raise
        finally:
            self._log_access(request, app, status, time.monotonic() - started)

    def _log_access(self, request: web.Request, app: str, status: int, seconds: float) -> None:
        path = request.raw_path if len(request.raw_path) <= 500 else request.raw_path[:500] + "..."
        self.access_log(app, f"method={request.method} path=\"{path}\" status={status} "
                             f"service={seconds * 1000:.0f}ms request_id={request[REQUEST_ID]} "
                             f"fwd=\"{request.remote or ''}\"")

    async def _route(self, request: web.Request, app: str) -> web.StreamResponse:
        ports = self.pick(app)
        if not ports:
            return _unavailable(app)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, ports[0])
        # A request the app cannot have acted on is tried on the next replica (or once
        # more on the only one: a pooled connection may have just been closed by the app).
        retry = request.method in IDEMPOTENT and not request.body_exists
        attempts = (ports if len(ports) > 1 else ports * 2) if retry else ports[:1]
        for port in attempts:
            try:
                return await self._forward(request, port)
            except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
                if request.get(STARTED):
                    raise
                logger.debug("upstream refused", app=app, port=port, error=type(exc).__name__)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                if request.get(STARTED):
                    raise  # the response is under way: aiohttp cuts the connection
                logger.info("upstream failed", app=app, port=port, error=type(exc).__name__)
                break
        return _unavailable(app, status=502)

    async def _forward(self, request: web.Request, port: int) -> web.StreamResponse:
        assert self._session is not None
        headers = self._forward_headers(request)
        async with self._session.request(
            request.method, f"http://{HOST}:{port}{request.raw_path}", headers=headers,
            data=request.content if request.body_exists else None, allow_redirects=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            request[STARTED] = True
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(CHUNK):
                await response.write(chunk)
            await response.write_eof()
            return response

    async def _websocket(self, request: web.Request, port: int) -> web.StreamResponse:
        assert self._session is not None
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        headers = {k: v for k, v in self._forward_headers(request).items()
                   if not k.lower().startswith("sec-websocket") and k.lower() not in ("content-length",)}
        try:
            upstream = await self._session.ws_connect(
                f"http://{HOST}:{port}{request.raw_path}", headers=headers, protocols=protocols,
                autoping=False, autoclose=False, max_msg_size=0,
            )
        except aiohttp.WSServerHandshakeError as exc:
            return web.Response(status=exc.status, text=f"The app refused the WebSocket upgrade ({exc.status}).\n")
        except aiohttp.ClientConnectorError:
            return _unavailable(self.app_for_host(request.host) or "", status=502)
        client = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else (),
                                       autoping=False, autoclose=False, max_msg_size=0)
        await client.prepare(request)
        async with upstream:
            await _relay_both(client, upstream)
        return client

    def _forward_headers(self, request: web.Request) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in request.headers.items():
            if name.lower() not in NOT_FORWARDED:
                headers.add(name, value)
        peer = request.remote or ""
        trusted = self.trusted(peer)
        previous = ", ".join(request.headers.getall("X-Forwarded-For", [])) if trusted else ""
        headers["X-Forwarded-For"] = f"{previous}, {peer}" if previous else peer
        proto = request.headers.get("X-Forwarded-Proto", "") if trusted else ""
        headers["X-Forwarded-Proto"] = proto if proto in ("http", "https") else request.scheme
        headers["X-Forwarded-Host"] = request.host
        headers["X-Request-Id"] = request[REQUEST_ID]
        return headers


async def _relay_both(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    tasks = [asyncio.create_task(_relay(client, upstream)), asyncio.create_task(_relay(upstream, client))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ws in (client, upstream):
            if not ws.closed:
                await ws.close()


async def _relay(source: WebSocket, target: WebSocket) -> None:
    async for message in source:
        if message.type == aiohttp.WSMsgType.TEXT:
            await target.send_str(message.data)
        elif message.type == aiohttp.WSMsgType.BINARY:
            await target.send_bytes(message.data)
        elif message.type == aiohttp.WSMsgType.PING:
            await target.ping(message.data)
        elif message.type == aiohttp.WSMsgType.PONG:
            await target.pong(message.data)
        elif message.type == aiohttp.WSMsgType.CLOSE:
            await target.close(code=message.data or 1000, message=(message.extra or "").encode())
            return
        else:
            return


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _unavailable(app: str, status: int = 503) -> web.Response:
    return web.Response(status=status, text=UNAVAILABLE_PAGE.format(app=html.escape(app)), content_type="text/html")
