"""The operator's HTTP listener: /healthz, /readyz and /metrics.

Both /readyz and /metrics run the readiness checks, and record their outcome
in `teresa_ready{check}`, so an alert on readiness needs only the scrape.

/metrics names every app and its outcomes, and the listener is on the machine
the local runtime's apps run on: it answers only with `Authorization: Bearer
<token>`, the token being TERESA_METRICS_TOKEN or, unset, one generated once
into the data directory (`metrics-token`, 0600: app processes cannot read it).
/healthz and /readyz stay open for probes.

`health_app(checks)` builds the aiohttp application; `start_health_server`
binds it on Settings.http_addr. A readiness check is an async callable that
returns when its dependency is reachable and raises when it is not; the
exception's first line becomes the reason shown on /readyz.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
from pathlib import Path
from typing import Awaitable, Callable, Mapping, Protocol

import sqlalchemy as sa

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from core import metrics
from core.private import FILE_MODE, private_dir

Check = Callable[[], Awaitable[object]]

CHECKS_KEY: web.AppKey[Mapping[str, Check]] = web.AppKey("checks", dict)
TIMEOUT_KEY = web.AppKey("check_timeout", float)
REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)
TOKEN_KEY = web.AppKey("metrics_token", str)
TOKEN_FILE = "metrics-token"
UNAUTHORIZED = ("/metrics needs the header Authorization: Bearer TOKEN, the token being TERESA_METRICS_TOKEN "
                f"or the server's data directory's {TOKEN_FILE} file; give it to the scraper.\n")


def health_app(
    checks: Mapping[str, Check] | None = None,
    *,
    metrics_token: str,
    timeout: float = 5.0,
    registry: CollectorRegistry = metrics.REGISTRY,
) -> web.Application:
    if not metrics_token:
        raise ValueError("/metrics needs a token")
    app = web.Application()
    app[CHECKS_KEY] = dict(checks or {})
    app[TIMEOUT_KEY] = timeout
    app[REGISTRY_KEY] = registry
    app[TOKEN_KEY] = metrics_token
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


async def start_health_server(app: web.Application, addr: tuple[str, int]) -> web.AppRunner:
    """Serve `app` on addr (HOST, PORT; port 0 picks a free one). Stop it with `await runner.cleanup()`."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, addr[0], addr[1]).start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    port: int = runner.addresses[0][1]  # an (host, port, ...) address tuple, untyped in aiohttp
    return port


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _readyz(request: web.Request) -> web.Response:
    failures = await _checked(request.app)
    if not failures:
        return web.Response(text="ok\n")
    body = "".join(f"{name}: {reason}\n" for name, reason in sorted(failures.items()))
    return web.Response(status=503, text=body)


def metrics_token(data_dir: Path, configured: str = "") -> str:
    """`configured` (TERESA_METRICS_TOKEN), else the data directory's token, made on first use. Blocking."""
    if configured:
        return configured
    path = private_dir(data_dir) / TOKEN_FILE
    if not path.exists():
        partial = path.with_name(f".{TOKEN_FILE}.{secrets.token_hex(4)}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(partial, path)  # never replaces a token another process made meanwhile
        except FileExistsError:
            pass
        finally:
            partial.unlink()
    return path.read_text().strip()


def _authorized(request: web.Request) -> bool:
    given = request.headers.get("Authorization", "").encode("utf-8", "replace")
    return hmac.compare_digest(given, f"Bearer {request.app[TOKEN_KEY]}".encode())


async def _metrics(request: web.Request) -> web.Response:
    if not _authorized(request):
        return web.Response(status=401, text=UNAUTHORIZED, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    await _checked(request.app)  # teresa_ready is as fresh as the scrape: alerts need no prober
    payload = generate_latest(request.app[REGISTRY_KEY])
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _checked(app: web.Application) -> dict[str, str]:
    """Run the app's checks and record each outcome in teresa_ready; return the failures."""
    checks = app[CHECKS_KEY]
    failures = await run_checks(checks, app[TIMEOUT_KEY])
    for name in checks:
        metrics.ready.labels(check=name).set(0 if name in failures else 1)
    return failures


async def run_checks(checks: Mapping[str, Check], timeout: float) -> dict[str, str]:
    """Run every check concurrently; return {name: one-line reason} for those that failed."""
    names = list(checks)
    results = await asyncio.gather(*(_one(checks[name], timeout) for name in names))
    return {name: reason for name, reason in zip(names, results) if reason is not None}


async def _one(check: Check, timeout: float) -> str | None:
    try:
        await asyncio.wait_for(check(), timeout)
    except asyncio.TimeoutError:
        return f"no answer within {timeout:g}s"
    except Exception as exc:  # a failing dependency, whatever its library raises
        return _one_line(exc)
    return None


class _Exists(Protocol):
    def exists(self, key: str) -> bool: ...


def database_check(engine: sa.Engine) -> Check:
    """A readiness check that runs SELECT 1 on a pooled connection, in a worker thread."""

    def ping() -> None:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    return lambda: asyncio.to_thread(ping)


def storage_check(storage: _Exists, key: str = "health/probe") -> Check:
    """A readiness check that asks storage whether a key exists (the answer does not matter, reaching it does)."""
    return lambda: asyncio.to_thread(storage.exists, key)


class Draining(Exception):
    pass


def draining_check(draining: asyncio.Event) -> Check:
    """A readiness check that fails once the server is draining, so the Service sends new sessions elsewhere."""

    async def check() -> None:
        if draining.is_set():
            raise Draining("this replica is shutting down; new sessions go to the others")

    return check


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
