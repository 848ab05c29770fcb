"""Supervised replicas of an app's processes: restart with backoff, health checks, draining."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import aiohttp

from controller.runtime.base import ProcessStatus
from controller.runtime.local.logstore import LogStore
from controller.runtime.local.probes import HOST, http_answers, http_check, tcp_check
from controller.runtime.local.processes import base_env, iter_lines, listening_ports, spawn, stop_group
from controller.runtime.local.tenancy import AppUser
from controller.spec import ReleaseSpec
from controller.teresa_yaml import Probe
from core.ports import free_port


@dataclass(frozen=True)
class Timings:
    backoff_initial: float = 1.0
    backoff_cap: float = 30.0
    backoff_reset_after: float = 60.0   # a process up this long has its backoff reset
    port_poll: float = 0.2              # how often a web process without readiness check is tried
    min_stop_grace: float = 1.0         # SIGTERM to SIGKILL, when the drain timeout is shorter
    min_ready: float = 3.0              # a new replica must stay up this long after it is ready (minReadySeconds)
    port_scan: float = 1.0              # how often a web process that does not answer on $PORT is looked at
    wrong_port_grace: float = 5.0       # listening on other ports, never on $PORT, this long fails a rollout
    progress_interval: float = 10.0     # a rollout that waits says what it waits for this often
    default_check_timeout: float = 5.0  # the default readiness check: GET / on $PORT, any answer will do


TAIL_LINES = 20  # a replica's last output lines, kept for the sentence that says why it failed


def lowest_free(used: set[int]) -> int:
    return next(i for i in range(1, len(used) + 2) if i not in used)


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
    ready_at: float | None = None      # when it last became ready; None while it is not
    ever_ready: bool = False
    listened: bool = False             # something accepted a connection on $PORT at least once
    other_ports: tuple[int, ...] = ()  # listening there, not on $PORT, since `wrong_port_since`
    wrong_port_since: float | None = None
    unhealthy: bool = False            # its last exit was the liveness check's doing
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES), repr=False)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)
    _proc: asyncio.subprocess.Process | None = field(default=None, repr=False)
    _stop: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def name(self) -> str:
        return f"{self.process_type}.{self.index}"

    @property
    def serving(self) -> bool:
        """Ready and in rotation: the router sends it requests."""
        return self.ready and self.in_rotation and self.state == "up"

    @property
    def available(self) -> bool:
        """Serving for the stability window already: what counts for a rollout and for maxUnavailable."""
        return self.serving and self.ready_for() >= self.supervisor.timings.min_ready

    def ready_for(self) -> float:
        return time.monotonic() - self.ready_at if self.ready_at is not None else 0.0

    def on_wrong_port_for(self) -> float:
        """How long it has listened on other ports and never on $PORT (0: it has not)."""
        return time.monotonic() - self.wrong_port_since if self.wrong_port_since is not None else 0.0

    def status(self) -> ProcessStatus:
        uptime = time.monotonic() - self.started_at if self.started_at and self.state in ("up", "starting") else None
        return ProcessStatus(self.process_type, self.name, self.state, self.restarts, uptime, self.release.version)

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"replica {self.name}")

    def mark_stopping(self) -> None:
        self._set(state="stopping")

    async def stop(self, grace: float) -> None:
        self._stop.set()
        self._set(state="stopping", ready=False, ready_at=None)
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
            self._set(state="crashed", ready=False, ready_at=None, last_exit=status, restarts=self.restarts + 1)
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
            self._set(state="starting", ready=False, ready_at=None, started_at=time.monotonic(), unhealthy=False)
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
            self.tail.append(line)
            self.supervisor.logs.append(self.process_type, self.name, line)

    def _mark_ready(self, ready: bool) -> None:
        if self._stop.is_set() or self.state == "stopping":  # draining: out of rotation for good
            return
        state = "up" if ready else "starting"
        if (ready, state) != (self.ready, self.state):
            ready_at = time.monotonic() if ready else None
            self._set(ready=ready, state=state, ready_at=ready_at, ever_ready=self.ever_ready or ready)

    async def _readiness(self) -> None:
        probe = self.release.spec.readiness
        if probe is not None:
            await self._readiness_probe(probe)
        elif self.process_type == "web":
            await self._answers_http()
            self._mark_ready(True)
        else:
            self._mark_ready(True)

    async def _answers_http(self) -> None:
        """The default readiness check of a web process: any HTTP response to GET / on $PORT."""
        timings = self.supervisor.timings
        while True:
            await self._port_open()
            result = await http_answers(self.supervisor.http, self.port, timings.default_check_timeout)
            self.last_check = result.detail
            if result.ok:
                return
            await asyncio.sleep(timings.port_poll)

    async def _port_open(self) -> None:
        timings = self.supervisor.timings
        loop = asyncio.get_running_loop()
        next_scan = loop.time() + timings.port_scan
        while not (result := await tcp_check(self.port)).ok:
            self.last_check = result.detail
            if loop.time() >= next_scan and self._proc is not None:
                self._note_other_ports(await asyncio.to_thread(listening_ports, self._proc.pid))
                next_scan = loop.time() + timings.port_scan
            await asyncio.sleep(timings.port_poll)
        self.last_check = result.detail
        if not self.listened or self.other_ports:
            self._set(listened=True, other_ports=(), wrong_port_since=None)

    def _note_other_ports(self, ports: set[int]) -> None:
        others = tuple(sorted(ports - {self.port}))
        if others and self.port not in ports:
            if self.wrong_port_since is None:
                self._say(f"listens on port {', '.join(map(str, others))}, not on $PORT ({self.port})")
            self._set(other_ports=others, wrong_port_since=self.wrong_port_since or time.monotonic())
        elif self.other_ports:
            self._set(other_ports=(), wrong_port_since=None)

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
                self.last_check = result.detail
                self.unhealthy = True
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
        while (port := free_port(HOST)) in taken:
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
        return [r.port for r in self.replicas if r.process_type == process_type and r.serving]

    def add(self, release: ReleaseSpec, process_type: str, app_dir: Path, index: int | None = None) -> Replica:
        """Start a replica; `index` names it (web.1, ...), by default the lowest one no live replica has."""
        if index is None:
            index = lowest_free({r.index for r in self.live(process_type)})
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
