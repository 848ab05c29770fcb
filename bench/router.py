#!/usr/bin/env python3
"""Router benchmark: the same load straight to an app and through the local router, side by side.

An app server (aiohttp, one process: `/` answers a few bytes, `/big` streams 10 MB
in 64 KB chunked writes) and Teresa's router (controller/runtime/local/router.py,
in its own process, writing its access lines into a real app log store) run on
127.0.0.1. `wrk` (Debian's package, C, one thread, 50 keep-alive connections)
loads each side in turn; the cases alternate direct, routed, direct, routed ... so
both see the same machine, and the median of the rounds is reported. Client,
router and app share this machine's cores. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

BIG = 10 * 1024 * 1024
PIECE = 64 * 1024
HOST = "bench.localhost"
LATENCY_GOAL = 1.3
THROUGHPUT_GOAL = 1.5


# ---------------------------------------------------------------- the two servers (child processes)


def serve_app() -> None:
    """The app: aiohttp's server, as many Python apps are served; prints its port."""
    from aiohttp import web

    piece = os.urandom(PIECE)

    async def small(request: web.Request) -> web.Response:
        return web.Response(text="hello from the app\n")

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "application/octet-stream"
        await response.prepare(request)
        for _ in range(BIG // PIECE):
            await response.write(piece)
        await response.write_eof()
        return response

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", small)
        app.router.add_get("/big", big)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print("port", runner.addresses[0][1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def serve_router(app_port: int, logs: Path, loop: str) -> None:
    """Teresa's router in front of the app, its access lines going to a LogStore as in the runtime."""
    if loop == "uvloop":
        import uvloop
        uvloop.install()
    from controller.runtime.local.logstore import LogStore
    from controller.runtime.local.router import Router

    store = LogStore(logs)

    async def main() -> None:
        router = Router("localhost", lambda app: [app_port],
                        access_log=lambda app, line: store.append("router", "router", line))
        router.add_app("bench")
        await router.start(("127.0.0.1", 0))
        print("port", router.port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# ---------------------------------------------------------------- load


@dataclass(frozen=True)
class Load:
    median_ms: float
    p99_ms: float
    requests_per_s: float
    mb_per_s: float
    errors: int
    requests: int
    cpu_s: dict[str, float]  # CPU seconds each server process used during the run


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
SIZES = {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1.0, "GB": 1024.0}


def wrk(port: int, path: str, seconds: float, connections: int, servers: dict[str, int]) -> Load:
    before = {name: cpu_seconds(pid) for name, pid in servers.items()}
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "30s",
         "-H", f"Host: {HOST}", f"http://127.0.0.1:{port}{path}"],
        check=True, capture_output=True, text=True).stdout

    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * UNITS[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    size, unit = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", out).groups()  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|Socket errors:.*?):?\s+(\d+)", out))
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in servers.items()}
    return Load(latency("50"), latency("99"), rps, float(size) * SIZES[unit], errors, requests, cpu)


def start(argv: list[str]) -> tuple[subprocess.Popen[str], int]:
    """Start one of the servers; its port is on the first stdout line that starts with "port"."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO_ROOT)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("port "):
            return process, int(line.split()[1])
    sys.exit(f"{argv[-1]} did not start")


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("bench/router.py needs wrk: apt-get install wrk")
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL)


# ---------------------------------------------------------------- report


def verdict(ratio: float, goal: float) -> str:
    return f"{ratio:5.2f}x  goal <= {goal}x  {'ok' if ratio <= goal else 'MISSED'}"


def report(case: str, direct: list[Load], routed: list[Load], big: bool) -> bool:
    def med(loads: list[Load], attr: str) -> float:
        return statistics.median(getattr(load, attr) for load in loads)

    rows = [("median latency", "median_ms", "ms", False, LATENCY_GOAL),
            ("p99 latency", "p99_ms", "ms", False, LATENCY_GOAL),
            ("throughput", "mb_per_s" if big else "requests_per_s", "MB/s" if big else "req/s", True,
             THROUGHPUT_GOAL)]
    if not all(load.requests for load in direct + routed):
        print(f"{case:<16} a run completed no request: make --seconds longer")
        return False
    met = True
    for label, attr, unit, higher_is_better, goal in rows:
        d, r = med(direct, attr), med(routed, attr)
        ratio = d / r if higher_is_better else r / d
        met &= ratio <= goal
        print(f"{case:<16} {label:<15} direct {d:10.2f} {unit:<5} routed {r:10.2f} {unit:<5} "
              f"routed/direct {verdict(ratio, goal)}" if not higher_is_better else
              f"{case:<16} {label:<15} direct {d:10.2f} {unit:<5} routed {r:10.2f} {unit:<5} "
              f"direct/routed {verdict(ratio, goal)}")
    per_request = {name: 1e6 * sum(load.cpu_s[name] for load in routed) / max(1, sum(load.requests for load in routed))
                   for name in ("app", "router")}
    print(f"{case:<16} CPU per request, routed runs: app {per_request['app']:.0f} us, "
          f"router {per_request['router']:.0f} us")
    errors = sum(load.errors for load in direct + routed)
    if errors:
        print(f"{case:<16} errors: {errors}")
    return met and not errors


def options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="direct/routed rounds per case; medians (3)")
    parser.add_argument("--seconds", type=float, default=5, help="length of each wrk run (5)")
    parser.add_argument("--connections", type=int, default=50, help="keep-alive clients (50)")
    parser.add_argument("--quick", action="store_true", help="one round of 2 s per case")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="the router's event loop (asyncio)")
    parser.add_argument("--serve-app", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-router", type=int, metavar="APP_PORT", help=argparse.SUPPRESS)
    parser.add_argument("--logs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 1, 2
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = options(argv)
    if args.serve_app:
        return serve_app()
    if args.serve_router:
        return serve_router(args.serve_router, args.logs, args.loop)
    ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="teresa-bench-router-") as work:
        me = [sys.executable, str(Path(__file__).resolve())]
        app, app_port = start(me + ["--serve-app"])
        router, router_port = start(me + ["--serve-router", str(app_port), "--logs", work, "--loop", args.loop])
        try:
            print(f"router benchmark: {args.connections} keep-alive clients (wrk, 1 thread), "
                  f"{args.rounds} x {args.seconds:g} s per side and case; wrk, router and app share "
                  f"{os.cpu_count()} cores")
            met = True
            for case, path, big in (("small response", "/", False), ("10 MB streamed", "/big", True)):
                # 50 clients x 10 MB take seconds per round: give every client time to finish several.
                seconds = 3 * args.seconds if big else args.seconds
                servers = {"app": app.pid, "router": router.pid}
                wrk(app_port, path, 1, args.connections, servers)  # warm both sides up
                wrk(router_port, path, 1, args.connections, servers)
                direct, routed = [], []
                for _ in range(args.rounds):
                    direct.append(wrk(app_port, path, seconds, args.connections, servers))
                    routed.append(wrk(router_port, path, seconds, args.connections, servers))
                met &= report(case, direct, routed, big)
        finally:
            for process in (router, app):
                process.terminate()
                process.wait(10)
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
