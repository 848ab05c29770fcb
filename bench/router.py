#!/usr/bin/env python3
"""Router benchmark: the same load straight to an app and through the local router, side by side.

An app server (aiohttp, one process: `/` answers a few bytes, `/big` streams 10 MB
in 64 KB chunked writes) and Teresa's router (controller/runtime/local/router.py,
in its own process, writing its access lines into a real app log store) run on
127.0.0.1. `wrk` (Debian's package, C, one thread, 50 keep-alive connections)
loads each side in turn; the cases alternate direct, routed, direct, routed ... so
both see the same machine, and the median of the rounds is reported. Client,
router and app share this machine's cores. With --reference, HAProxy and nginx
(Debian's, one process each, splice on for HAProxy, buffering off for nginx) run
in front of the same app in the same rounds: what the ecosystem's C proxies reach
on the same machine. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
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


# ---------------------------------------------------------------- reference proxies (--reference)

HAPROXY_CONFIG = """global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
  option splice-response
frontend router
  bind 127.0.0.1:{port}
  option forwardfor
  http-request set-header X-Request-Id %[uuid()]
  default_backend app
backend app
  server app 127.0.0.1:{app_port}
"""
NGINX_CONFIG = """worker_processes 1; daemon off; master_process off; pid {work}/nginx.pid; error_log {work}/nginx.err;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  upstream app {{ server 127.0.0.1:{app_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr; proxy_set_header X-Request-Id $request_id;
      proxy_buffering off;
    }}
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_references(app_port: int, work: str) -> dict[str, tuple[subprocess.Popen[bytes], int]]:
    """HAProxy and nginx (Debian's, one process each) in front of the same app, where installed."""
    started = {}
    for name, config, argv in (("haproxy", HAPROXY_CONFIG, ["haproxy", "-db", "-f"]),
                               ("nginx", NGINX_CONFIG, ["nginx", "-p", work, "-c"])):
        if not shutil.which(name):
            print(f"({name} is not installed: apt-get install {name}; left out)")
            continue
        port = free_port()
        path = Path(work) / f"{name}.conf"
        path.write_text(config.format(port=port, app_port=app_port, work=work))
        process = subprocess.Popen(argv + [str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    started[name] = (process, port)
                    break
            time.sleep(0.05)
        else:
            process.kill()
            print(f"({name} did not start; left out)")
    return started


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


def report(case: str, direct: list[Load], routed: list[Load], big: bool, proxy: str = "router") -> bool:
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
        side = "routed" if proxy == "router" else proxy
        order = f"direct/{side}" if higher_is_better else f"{side}/direct"
        print(f"{case:<16} {label:<15} direct {d:10.2f} {unit:<5} {side:<7} {r:10.2f} {unit:<5} "
              f"{order:<14} {verdict(ratio, goal)}")
    per_request = {name: 1e6 * sum(load.cpu_s[name] for load in routed) / max(1, sum(load.requests for load in routed))
                   for name in ("app", proxy)}
    print(f"{case:<16} CPU per request, {side} runs: app {per_request['app']:.0f} us, "
          f"{proxy} {per_request[proxy]:.0f} us")
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
    parser.add_argument("--reference", action="store_true",
                        help="also HAProxy and nginx in front of the same app, in the same rounds")
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
        references = start_references(app_port, work) if args.reference else {}
        try:
            print(f"router benchmark: {args.connections} keep-alive clients (wrk, 1 thread), "
                  f"{args.rounds} x {args.seconds:g} s per side and case; wrk, router and app share "
                  f"{os.cpu_count()} cores")
            met = True
            proxies = {"router": (router, router_port), **references}
            for case, path, big in (("small response", "/", False), ("10 MB streamed", "/big", True)):
                # 50 clients x 10 MB take seconds per round: give every client time to finish several.
                seconds = 3 * args.seconds if big else args.seconds
                servers = {"app": app.pid, **{name: process.pid for name, (process, _) in proxies.items()}}
                for port in [app_port] + [port for _, port in proxies.values()]:  # warm every side up
                    wrk(port, path, 1, args.connections, servers)
                direct: list[Load] = []
                routed: dict[str, list[Load]] = {name: [] for name in proxies}
                for _ in range(args.rounds):
                    direct.append(wrk(app_port, path, seconds, args.connections, servers))
                    for name, (_, port) in proxies.items():
                        routed[name].append(wrk(port, path, seconds, args.connections, servers))
                met &= report(case, direct, routed["router"], big)
                for name in references:
                    report(case, direct, routed[name], big, proxy=name)
        finally:
            for process, _ in [(router, 0), (app, 0), *references.values()]:
                process.terminate()
                process.wait(10)
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
