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


async def http_check(session: aiohttp.ClientSession, port: int, probe: Probe) -> CheckResult:
    what = f"GET {probe.path}"
    try:
        async with session.get(
            f"http://{HOST}:{port}{probe.path}",
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=probe.timeout_seconds),
        ) as response:
            await response.read()
            return CheckResult(200 <= response.status < 400, f"{what} returned HTTP {response.status}")
    except asyncio.TimeoutError:
        return CheckResult(False, f"{what} timed out after {probe.timeout_seconds}s")
    except aiohttp.ClientConnectorError:
        return CheckResult(False, f"{what} found nothing listening on port {port}")
    except aiohttp.ClientError as exc:
        return CheckResult(False, f"{what} failed: {type(exc).__name__}")


async def http_answers(session: aiohttp.ClientSession, port: int, timeout: float) -> CheckResult:
    """GET / on `port`: any HTTP response proves the app loaded (even 404 or 500); refused or reset does not."""
    try:
        async with session.get(f"http://{HOST}:{port}/", allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            return CheckResult(True, f"GET / returned HTTP {response.status}")
    except asyncio.TimeoutError:
        return CheckResult(False, f"GET / got no answer within {timeout:g}s")
    except aiohttp.ClientConnectorError:
        return CheckResult(False, f"GET / found nothing listening on port {port}")
    except aiohttp.ClientError as exc:
        return CheckResult(False, f"GET / got no HTTP answer ({type(exc).__name__})")


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
