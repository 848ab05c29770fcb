"""Supervised replicas of an app's processes: restart with backoff, health checks, draining."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import aiohttp

from controller.runtime.base import ProcessStatus
from controller.runtime.local.logstore import LogStore
from controller.runtime.local.probes import HOST, http_check, tcp_check
from controller.runtime.local.processes import base_env, iter_lines, spawn, stop_group
from controller.runtime.local.tenancy import AppUser
from controller.spec import ReleaseSpec
from controller.teresa_yaml import Probe


@dataclass(frozen=True)
class Timings:
    backoff_initial: float = 1.0
    backoff_cap: float = 30.0
    backoff_reset_after: float = 60.0   # a process up this long has its backoff reset
    port_poll: float = 0.2              # how often a web process without readiness check is tried
    min_stop_grace: float = 1.0         # SIGTERM to SIGKILL, when the drain timeout is shorter


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]  # (host, port) for IPv4
        return port


@dataclass(eq=False)
class Replica:
    process_type: str
    index: int
    release: ReleaseSpec
    app_dir: Path
    supervisor: "AppSupervisor" = field(repr=False)
    port: int = 0                      # chosen afresh at each start
    state: str = "starting"            # starting, up, crashed, stopping, stopped
    restarts: int = 0
    ready: bool = False
    in_rotation: bool = True           # cleared before a replica is drained
    last_check: str = "no health check has run yet"
    last_exit: int | None = None
    started_at: float | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)
    _proc: asyncio.subprocess.Process | None = field(default=None, repr=False)
    _stop: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def name(self) -> str:
        return f"{self.process_type}.{self.index}"

    @property
    def available(self) -> bool:
        """Ready and in rotation: what counts for traffic and for maxUnavailable."""
        return self.ready and self.in_rotation and self.state == "up"

    def status(self) -> ProcessStatus:
        uptime = time.monotonic() - self.started_at if self.started_at and self.state in ("up", "starting") else None
        return ProcessStatus(self.process_type, self.name, self.state, self.restarts, uptime, self.release.version)

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"replica {self.name}")

    def mark_stopping(self) -> None:
        self._set(state="stopping")

    async def stop(self, grace: float) -> None:
        self._stop.set()
        self._set(state="stopping", ready=False)
        if self._proc and self._proc.returncode is None:
            await stop_group(self._proc, grace)
        if self._task:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._set(state="stopped")

    # -- internals

    def _set(self, **changes: object) -> None:
        for name, value in changes.items():
            setattr(self, name, value)
        self.supervisor.notify()

    def _say(self, line: str) -> None:
        self.supervisor.logs.append(self.process_type, f"teresa[{self.name}]", line)

    def _env(self) -> dict[str, str]:
        extra = {"TMPDIR": str(self.supervisor.tmp_dir)} if self.supervisor.tmp_dir else {}
        return base_env({**self.release.config, **extra, "PORT": str(self.port), "TERESA_APP_DIR": str(self.app_dir),
                         "DYNO": self.name})

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        timings = self.supervisor.timings
        backoff = timings.backoff_initial
        while not self._stop.is_set():
            began = loop.time()
            status = await self._run_once()
            if self._stop.is_set():
                return
            if loop.time() - began >= timings.backoff_reset_after:
                backoff = timings.backoff_initial
            self._set(state="crashed", ready=False, last_exit=status, restarts=self.restarts + 1)
            self._say(f"process exited with status {status}; restarting in {backoff:g}s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff)
            backoff = min(backoff * 2, timings.backoff_cap)

    async def _run_once(self) -> int:
        argv = self.supervisor.start_command(self.process_type)
        self.port = self.supervisor.free_port()  # a fresh one each time: the old may be taken meanwhile
        self._say(f"starting {self.release.label} on port {self.port}")
        try:
            proc = await spawn(argv, self._env(), self.app_dir, user=self.supervisor.user)
        except OSError as exc:
            self._say(f"could not start {argv[0]}: {exc.strerror}")
            return 127
        self._proc = proc
        if self._stop.is_set():
            await stop_group(proc, 0)
        else:
            self._set(state="starting", ready=False, started_at=time.monotonic())
        pump = asyncio.create_task(self._pump(proc))
        checks = [asyncio.create_task(self._readiness()), asyncio.create_task(self._liveness(proc))]
        try:
            return await proc.wait()
        finally:
            for task in checks:
                task.cancel()
            # A grandchild may hold the pipe open after the leader exits; give it a moment.
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(pump, 1.0)
            await asyncio.gather(*checks, return_exceptions=True)

    async def _pump(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in iter_lines(proc.stdout):
            self.supervisor.logs.append(self.process_type, self.name, line)

    def _mark_ready(self, ready: bool) -> None:
        if self._stop.is_set() or self.state == "stopping":  # draining: out of rotation for good
            return
        state = "up" if ready else "starting"
        if (ready, state) != (self.ready, self.state):
            self._set(ready=ready, state=state)

    async def _readiness(self) -> None:
        probe = self.release.spec.readiness
        if probe is not None:
            await self._readiness_probe(probe)
        elif self.process_type == "web":
            await self._port_open()
            self._mark_ready(True)
        else:
            self._mark_ready(True)

    async def _port_open(self) -> None:
        while not (result := await tcp_check(self.port)).ok:
            self.last_check = result.detail
            await asyncio.sleep(self.supervisor.timings.port_poll)
        self.last_check = result.detail

    async def _readiness_probe(self, probe: Probe) -> None:
        await asyncio.sleep(probe.initial_delay_seconds)
        # No HTTP check can pass before the port is open: waiting for it first spares
        # a whole period of not-ready time after a failed first check.
        await self._port_open()
        successes = failures = 0
        while True:
            result = await http_check(self.supervisor.http, self.port, probe)
            self.last_check = result.detail
            successes, failures = (successes + 1, 0) if result.ok else (0, failures + 1)
            if successes >= probe.success_threshold:
                self._mark_ready(True)
            elif failures >= probe.failure_threshold:
                self._mark_ready(False)
            await asyncio.sleep(probe.period_seconds)

    async def _liveness(self, proc: asyncio.subprocess.Process) -> None:
        probe = self.release.spec.liveness
        if probe is None:
            return
        await asyncio.sleep(probe.initial_delay_seconds)
        failures = 0
        while True:
            result = await http_check(self.supervisor.http, self.port, probe)
            failures = 0 if result.ok else failures + 1
            if failures >= probe.failure_threshold:
                self._say(f"liveness check failed {failures} times ({result.detail}); restarting")
                self.last_check = f"liveness check: {result.detail}"
                await stop_group(proc, self.supervisor.stop_grace(self.release))
                return
            await asyncio.sleep(probe.period_seconds)


class AppSupervisor:
    """All replicas of one app, with the change notifications the rollout and tests wait on."""

    def __init__(self, app: str, app_root: Path, http: aiohttp.ClientSession, timings: Timings,
                 slugrunner: Sequence[str], *, user: AppUser | None = None, tmp_dir: Path | None = None) -> None:
        self.app = app
        self.user = user                        # the app's own uid when Teresa runs as root
        self.tmp_dir = tmp_dir
        self.http = http
        self.timings = timings
        self.slugrunner = list(slugrunner)
        self.logs = LogStore(app_root / "logs")
        self.replicas: list[Replica] = []       # live: not being drained or stopped
        self.retiring: dict[Replica, asyncio.Task[None]] = {}
        self._hurry = asyncio.Event()  # set when everything must stop now, draining or not
        self.observers: list[Callable[["AppSupervisor"], None]] = []
        self._changed = asyncio.Event()

    def free_port(self) -> int:
        taken = {r.port for r in self.replicas}
        while (port := free_port()) in taken:
            pass
        return port

    def start_command(self, process_type: str) -> list[str]:
        return [*self.slugrunner, "start", process_type]

    def stop_grace(self, release: ReleaseSpec) -> float:
        return max(float(release.spec.drain_timeout_seconds), self.timings.min_stop_grace)

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        for observer in list(self.observers):
            observer(self)

    async def wait_changed(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    def live(self, process_type: str | None = None) -> list[Replica]:
        return [r for r in self.replicas if process_type in (None, r.process_type)]

    def serving_ports(self, process_type: str = "web") -> list[int]:
        return [r.port for r in self.replicas if r.process_type == process_type and r.available]

    def add(self, release: ReleaseSpec, process_type: str, app_dir: Path) -> Replica:
        used = {r.index for r in self.replicas + list(self.retiring) if r.process_type == process_type}
        index = next(i for i in range(1, len(used) + 2) if i not in used)
        replica = Replica(process_type, index, release, app_dir, self)
        self.replicas.append(replica)
        replica.start()
        self.notify()
        return replica

    def retire(self, replica: Replica, drain: bool = True) -> asyncio.Task[None]:
        """Take `replica` out of rotation now; stop it after the drain timeout."""
        self.replicas.remove(replica)
        replica.in_rotation = False
        task = asyncio.create_task(self._drain_and_stop(replica, drain), name=f"retire {replica.name}")
        self.retiring[replica] = task
        self.notify()
        return task

    async def _drain_and_stop(self, replica: Replica, drain: bool) -> None:
        try:
            drain_seconds = replica.release.spec.drain_timeout_seconds
            if drain and drain_seconds and replica.state != "crashed":
                replica.mark_stopping()
                with contextlib.suppress(asyncio.TimeoutError):  # stop_all(drain=False) cuts draining short
                    await asyncio.wait_for(self._hurry.wait(), drain_seconds)
            await replica.stop(self.stop_grace(replica.release))
        finally:
            self.retiring.pop(replica, None)
            self.notify()

    async def wait_retired(self) -> None:
        while self.retiring:
            await asyncio.gather(*list(self.retiring.values()), return_exceptions=True)

    async def stop_all(self, drain: bool = False) -> None:
        if not drain:
            self._hurry.set()
        for replica in list(self.replicas):
            self.retire(replica, drain)
        await self.wait_retired()

    def status(self) -> list[ProcessStatus]:
        everyone = self.replicas + list(self.retiring)
        return [r.status() for r in sorted(everyone, key=lambda r: (r.process_type, r.index))]
