"""The HTTP router: Host header -> app -> one of its ready web replicas, streamed both ways.

Like Heroku's router it tells the app who asked: X-Forwarded-For/-Proto/-Host
(an incoming X-Forwarded-For or -Proto is kept only from TERESA_TRUSTED_PROXIES,
else replaced) and an X-Request-Id (kept when the client sent a sane one, else
made), and it writes one access line per request into the app's logs.

It is a lean asyncio HTTP/1.1 proxy rather than aiohttp's client and server:
every request is on the path between a user and an app, and aiohttp's parsing
and re-framing on both sides made a routed request cost three times a direct one
(bench/router.py). Here the work of a connection happens in protocol callbacks
(proxy.py), heads are parsed once, bodies pass in the pieces they arrive in with
their framing as sent (http1.py), and connections to the replicas are kept alive
and reused (upstreams.py). WebSocket upgrades become a byte tunnel.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import socket
import time
from typing import TYPE_CHECKING, Callable, Sequence

from controller.runtime.local.connections import Connections
from controller.runtime.local.http1 import HOP_BY_HOP, passed_on, render_head
from controller.runtime.local.probes import HOST
from controller.runtime.local.proxy import REPLACED, Client
from controller.runtime.local.upstreams import IDLE_SECONDS, Pool
from core import log
from core.config import ConfigError, Network

if TYPE_CHECKING:
    from controller.runtime.local.proxy import Exchange

logger = log.get("router")

SWEEP_SECONDS = 0.5  # how often connections are checked for late headers
NOT_PASSED = HOP_BY_HOP | REPLACED

Backends = Callable[[str], list[int]]
AccessLog = Callable[[str, str], None]  # (app, line)


def _no_access_log(app: str, line: str) -> None:
    pass


class Router:
    def __init__(self, domain: str, backends: Backends, *, trusted_proxies: Sequence[Network] = (),
                 access_log: AccessLog = _no_access_log, header_timeout: float = 15.0,
                 response_timeout: float = 30.0, max_connections_per_address: int = 256) -> None:
        self.domain = domain.lower().strip(".")
        self.backends = backends
        self.trusted_proxies = tuple(trusted_proxies)
        self.access_log = access_log
        self.connections = Connections(header_timeout, max_connections_per_address)
        self.response_timeout = response_timeout
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.pool = Pool(HOST)
        self.clients: set[Client] = set()
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
        self._server = await asyncio.get_running_loop().create_server(lambda: Client(self), sock=sock)
        self._sweeper = asyncio.create_task(self._sweep())
        logger.info("router listening", addr=f"{addr[0]}:{self.port}", domain=self.domain)

    async def stop(self) -> None:
        if self._server:
            self._server.close()
        if self._sweeper:
            self._sweeper.cancel()
        for client in list(self.clients):
            client.transport.abort()
        self.pool.close()

    async def _sweep(self) -> None:
        """Close the connections whose next request's head is late, answer the requests an app is too slow
        to answer, and close idle app connections of old."""
        loop = asyncio.get_running_loop()
        pool_swept = loop.time()
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = loop.time()
            late, overdue = now - self.connections.header_timeout, time.monotonic() - self.response_timeout
            for client in list(self.clients):
                if client.exchange is None:
                    if not client.refused and client.waiting_since < late:
                        client.headers_too_slow()
                elif client.exchange.sent < overdue:
                    client.exchange.timed_out()
            if now - pool_swept > IDLE_SECONDS:
                self.pool.sweep()
                pool_swept = now

    def trusted(self, peer: str | None) -> bool:
        if not self.trusted_proxies:
            return False
        try:
            address = ipaddress.ip_address(peer or "")
        except ValueError:
            return False
        return any(address in network for network in self.trusted_proxies)

    # -- what the exchanges ask of the router

    def forward_head(self, exchange: Exchange) -> bytes:
        head = exchange.head
        if head.version == b"HTTP/1.1" and not exchange.tunnel and not head.has_any(NOT_PASSED):
            # Nothing to take out (most requests): the head as sent, with the router's headers added.
            return b"".join((head.raw[:-2], b"X-Forwarded-For: ", exchange.client.peer.encode(),
                             b"\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ", exchange.host.encode("latin-1"),
                             b"\r\nX-Request-Id: ", exchange.request_id.encode(), b"\r\n\r\n"))
        headers = passed_on(head, chunked=exchange.framing.chunked, skip=REPLACED)
        if exchange.tunnel:
            headers += [(b"Connection", b"Upgrade"), (b"Upgrade", head.get(b"upgrade"))]
        peer = exchange.client.peer
        trusted = self.trusted(peer)
        previous = b", ".join(head.values(b"x-forwarded-for")) if trusted else b""
        proto = head.get(b"x-forwarded-proto") if trusted else b""
        headers += [
            (b"X-Forwarded-For", previous + b", " + peer.encode() if previous else peer.encode()),
            (b"X-Forwarded-Proto", proto if proto in (b"http", b"https") else b"http"),
            (b"X-Forwarded-Host", exchange.host.encode("latin-1")),
            (b"X-Request-Id", exchange.request_id.encode()),
        ]
        return render_head(exchange.method + b" " + exchange.target + b" HTTP/1.1", headers)

    def log_access(self, exchange: Exchange) -> None:
        assert exchange.app is not None
        path = exchange.target.decode("latin-1")
        path = path if len(path) <= 500 else path[:500] + "..."
        seconds = time.monotonic() - exchange.started
        # (json.dumps: a quote, a backslash or a control character in the path cannot end its field)
        self.access_log(exchange.app, f"method={exchange.method.decode()} path={json.dumps(path)} "
                                      f"status={exchange.status} service={seconds * 1000:.0f}ms "
                                      f"request_id={exchange.request_id} fwd=\"{exchange.client.peer}\"")


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host
