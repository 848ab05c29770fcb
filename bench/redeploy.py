"""Zero-downtime redeploy benchmark for the local runtime.

Starts `teresa serve` on loopback with a throwaway data directory, pushes the
sample app in bench/redeploy_app/ (2 web replicas, readiness check, maxUnavailable 0),
then keeps a few clients requesting through the router while three more pushes
happen one after the other; the second of them has a failing release phase and
must be rejected. Each client alternates a request through the router with the
same request straight to the replica port the router's last answer came from,
so both latencies are measured under the same load. Exits 1 if any request
through the router failed (non-2xx or connection error) or a push did not end
as expected.

    .venv/bin/python bench/redeploy.py [--clients 4] [--max-seconds 600]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Coroutine

import aiohttp

APP = "bench"
EMAIL = "bench@example.com"
SAMPLE = Path(__file__).resolve().parent / "redeploy_app"
BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return len(self.latencies) + sum(self.failures.values())

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def median_ms(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")


@dataclass
class Load:
    router_port: int
    clients: int
    max_requests: int
    router: Stats = field(default_factory=Stats)
    direct: Stats = field(default_factory=Stats)
    versions: Counter[str] = field(default_factory=Counter)
    latest_version: str = ""
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        await asyncio.gather(*(self._client() for _ in range(self.clients)))

    async def _client(self) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as via_router, \
                aiohttp.ClientSession(timeout=timeout) as direct:
            port = None
            while not self.stop.is_set() and self.router.requests < self.max_requests:
                answer = await _get(via_router, self.router_port, self.router, {"Host": f"{APP}.localhost"})
                if answer is not None:
                    port, version = answer
                    self.versions[version] += 1
                    self.latest_version = version
                if port is not None:
                    await _get(direct, port, self.direct, {})


async def _get(session: aiohttp.ClientSession, port: int, stats: Stats,
               headers: dict[str, str]) -> tuple[int, str] | None:
    """One GET /; on success returns the (port, version) the app said it answered from."""
    began = time.perf_counter()
    try:
        async with session.get(f"http://{LOOPBACK}:{port}/", headers=headers) as response:
            await response.read()
            if not 200 <= response.status < 300:
                stats.failures[f"HTTP {response.status}"] += 1
                return None
            stats.latencies.append(time.perf_counter() - began)
            return int(response.headers["X-App-Port"]), response.headers["X-App-Version"]
    except (aiohttp.ClientError, asyncio.TimeoutError, KeyError, ValueError) as exc:
        stats.failures[type(exc).__name__] += 1
        return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


class Bench:
    """A Teresa server, a git work copy of the sample app, and the key that may push to it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports = {name: free_port() for name in ("ssh", "router", "http")}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("TERESA", "SSH_AUTH_SOCK", "GIT_"))}
        self.env.update(
            TERESA_DATA_DIR=str(root / "data"), TERESA_RUNTIME="local", TERESA_LOG_FORMAT="console",
            TERESA_SSH_ADDR=f"{LOOPBACK}:{self.ports['ssh']}", TERESA_ROUTER_ADDR=f"{LOOPBACK}:{self.ports['router']}",
            TERESA_HTTP_ADDR=f"{LOOPBACK}:{self.ports['http']}", PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
            TERESA_APP_ISOLATION="off",  # one user's benchmark: apps run as this user
        )
        self.key = root / "id_ed25519"
        self.work = root / "work"
        self.server: subprocess.Popen[bytes] | None = None
        self.server_log = root / "server.log"

    # -- server

    def start(self) -> None:
        with self.server_log.open("wb") as log:
            self.server = subprocess.Popen([str(BIN / "teresa"), "serve"], env=self.env, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_for_health(60)

    def _wait_for_health(self, timeout: float) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server is not None and self.server.poll() is not None:
                raise SystemExit(f"teresa serve exited with status {self.server.returncode}; "
                                 f"see {self.server_log}:\n{self.server_log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{LOOPBACK}:{self.ports['http']}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"teresa serve did not answer /healthz within {timeout:g}s; see {self.server_log}")

    def stop(self) -> None:
        """SIGTERM the server (it stops the app's processes), SIGKILL its group if it lingers."""
        if self.server is None or self.server.poll() is not None:
            return
        self.server.terminate()
        try:
            self.server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait()

    def teresa(self, *argv: str, stdin: bytes = b"") -> str:
        result = subprocess.run([str(BIN / "teresa"), *argv], input=stdin, env=self.env, capture_output=True,
                                timeout=120)
        if result.returncode != 0:
            raise SystemExit(f"teresa {' '.join(argv)} failed: {result.stderr.decode().strip()}")
        return result.stdout.decode()

    def bootstrap(self) -> None:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(self.key)],
                       check=True)
        self.teresa("users:create", EMAIL, "--no-password", "--admin")
        self.teresa("keys:add", "--user", EMAIL, "bench", stdin=self.key.with_suffix(".pub").read_bytes())
        self.teresa("teams:create", "web")
        self.teresa("teams:add-user", "web", EMAIL)
        self.teresa("apps:create", APP, "--team", "web")

    # -- git

    @property
    def git_env(self) -> dict[str, str]:
        ssh = ["ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-i", str(self.key)]
        return {**self.env, "GIT_SSH_COMMAND": " ".join(ssh), "GIT_AUTHOR_NAME": "Bench",
                "GIT_AUTHOR_EMAIL": EMAIL, "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": EMAIL}

    def git(self, *args: str) -> None:
        subprocess.run(["git", *args], cwd=self.work, env=self.git_env, check=True, capture_output=True)

    def commit(self, version: int, fail_release: bool = False) -> None:
        if not self.work.exists():
            shutil.copytree(SAMPLE, self.work)
            self.git("init", "-q", "-b", "main")
        (self.work / "VERSION").write_text(f"{version}\n")
        (self.work / "FAIL_RELEASE").unlink(missing_ok=True)
        if fail_release:
            (self.work / "FAIL_RELEASE").write_text("the release phase exits 1 while this file exists\n")
        self.git("add", "-A")
        self.git("commit", "-q", "-m", f"version {version}" + (" (failing release phase)" if fail_release else ""))

    async def push(self) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            "git", "push", f"ssh://git@{LOOPBACK}:{self.ports['ssh']}/{APP}.git", "main", cwd=self.work,
            env=self.git_env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await proc.communicate()
        finally:
            if proc.returncode is None:  # cancelled: leave no git (and ssh) behind
                proc.kill()
                await proc.wait()
        return proc.returncode or 0, out.decode(errors="replace")


async def deploy_under_load(bench: Bench, args: argparse.Namespace) -> tuple[Load, list[str]]:
    """The three pushes, with the load running throughout; returns the load and any push problems."""
    load = Load(bench.ports["router"], args.clients, args.max_requests)
    runner = asyncio.create_task(load.run())
    problems: list[str] = []
    await asyncio.sleep(args.settle)  # some traffic on the steady state first
    plan = [(2, False), (3, True), (4, False)]
    for version, fail_release in plan:
        bench.commit(version, fail_release)
        began = time.monotonic()
        status, output = await bench.push()
        outcome = "rejected" if status else "released"
        print(f"push of version {version}{' (failing release phase)' if fail_release else ''}: "
              f"{outcome} in {time.monotonic() - began:.1f}s", flush=True)
        if fail_release and (status == 0 or "(release phase failed)" not in output):
            problems.append(f"the push of version {version} should have been rejected by its release phase:\n{output}")
        if fail_release and load.latest_version != str(version - 1):
            problems.append(f"after the rejected push the router served version {load.latest_version!r}, "
                            f"not the running {version - 1}")
        if not fail_release and status != 0:
            problems.append(f"the push of version {version} failed:\n{output}")
        if runner.done():
            break
    await asyncio.sleep(args.settle)  # replaced replicas drain and stop while traffic continues
    load.stop.set()
    await runner
    if load.latest_version != "4":
        problems.append(f"after the last push the router served version {load.latest_version!r}, not '4'")
    if "3" in load.versions:
        problems.append("version 3, whose release phase failed, answered requests")
    return load, problems


def report(load: Load, problems: list[str]) -> int:
    ratio = load.router.median_ms() / load.direct.median_ms()
    print(f"requests via router:      {load.router.requests}")
    print(f"failed requests:          {load.router.failed}"
          + (f" ({', '.join(f'{n}: {k}' for k, n in load.router.failures.items())})" if load.router.failed else ""))
    print(f"answers by version:       {', '.join(f'v{v}: {n}' for v, n in sorted(load.versions.items()))}")
    print(f"median latency, router:   {load.router.median_ms():.2f} ms")
    print(f"median latency, direct:   {load.direct.median_ms():.2f} ms ({load.direct.requests} requests, "
          f"{load.direct.failed} failed)")
    print(f"router / direct (median): {ratio:.2f}x")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if load.router.failed or problems or not load.router.latencies else 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="stop after this many router requests")
    parser.add_argument("--max-seconds", type=float, default=600, help="give up after this long (default 600)")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds of load before the first push and after the last (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server log, data)")
    parser.add_argument("--quick", action="store_true", help="1 s of load before the first push and after the last")
    args = parser.parse_args()
    if args.quick:
        args.settle = 1.0
    return args


async def run(bench: Bench, args: argparse.Namespace) -> int:
    await asyncio.to_thread(bench.start)
    await asyncio.to_thread(bench.bootstrap)
    bench.commit(1)
    status, output = await bench.push()
    if status != 0:
        raise SystemExit(f"the first push failed:\n{output}")
    await asyncio.to_thread(bench.teresa, "ps:scale", APP, "web=2")
    print(f"serving {APP} v1 on 2 web replicas; {args.clients} clients, three pushes follow", flush=True)
    load, problems = await deploy_under_load(bench, args)
    return report(load, problems)


async def until_stopped(work: Coroutine[Any, Any, int], max_seconds: float) -> int:
    """`work`, cancelled by SIGINT, SIGTERM, SIGHUP or the time limit."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, task.cancel)
    try:
        async with asyncio.timeout(max_seconds):
            return await work
    except TimeoutError:
        print(f"the benchmark did not finish within {max_seconds:g}s", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        print("interrupted", file=sys.stderr)
        return 130


def main() -> int:
    args = parse_args()
    return with_bench("teresa-redeploy-bench-", args.keep, lambda bench: until_stopped(run(bench, args), args.max_seconds))


def with_bench(prefix: str, keep: bool, body: Callable[[Bench], Coroutine[Any, Any, int]]) -> int:
    """Run `body` with a Bench in a new temporary directory; stop the server and clean up after."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    bench = Bench(root)
    try:
        return asyncio.run(body(bench))
    finally:
        bench.stop()
        if keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
