"""Health checks against a replica's port: HTTP GET (200-399 is healthy), any HTTP answer, or a TCP connect."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from controller.teresa_yaml import Probe

HOST = "127.0.0.1"


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str        # e.g. "GET /healthz returned HTTP 500", "connection refused on port 5000"


async def _get(session: aiohttp.ClientSession, port: int, path: str, timeout: float) -> int | str:
    """The HTTP status of GET `path` on `port`, or why there was none."""
    try:
        async with session.get(f"http://{HOST}:{port}{path}", allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            return response.status
    except asyncio.TimeoutError:
        return f"got no answer within {timeout:g}s"
    except aiohttp.ClientConnectorError:
        return f"found nothing listening on port {port}"
    except aiohttp.ClientError as exc:
        return f"got no HTTP answer ({type(exc).__name__})"


async def http_check(session: aiohttp.ClientSession, port: int, probe: Probe) -> CheckResult:
    """The readiness or liveness path of teresa.yaml: healthy on 200-399."""
    status = await _get(session, port, probe.path, probe.timeout_seconds)
    if isinstance(status, str):
        return CheckResult(False, f"GET {probe.path} {status}")
    return CheckResult(200 <= status < 400, f"GET {probe.path} returned HTTP {status}")


async def http_answers(session: aiohttp.ClientSession, port: int, timeout: float) -> CheckResult:
    """GET / on `port`: any HTTP response proves the app loaded (even 404 or 500); refused or reset does not."""
    status = await _get(session, port, "/", timeout)
    if isinstance(status, str):
        return CheckResult(False, f"GET / {status}")
    return CheckResult(True, f"GET / returned HTTP {status}")


async def tcp_check(port: int, timeout: float = 1.0) -> CheckResult:
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(HOST, port)
    except (OSError, asyncio.TimeoutError):
        return CheckResult(False, f"nothing is listening on port {port}")
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return CheckResult(True, f"port {port} accepts connections")
