"""The contract between the controller and a runtime (local processes or Kubernetes)."""

from __future__ import annotations

import datetime
import enum
import functools
import re
import time
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, Mapping, Protocol, Sequence

from builder.job import TIMED_OUT, BuildRequest
from controller.spec import ReleaseSpec
from core.commands import Input, Output
from core.errors import UserError

# Where a runtime writes lines for the user (build output, rollout progress).
# Each call is one line without its newline; it may await (backpressure).
LineSink = Callable[[str], Awaitable[None]]


LOG_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def log_timestamp(moment: datetime.datetime | None = None) -> str:
    """How each line of `logs` starts: UTC, RFC 3339, milliseconds, e.g. 2025-01-31T12:00:00.123Z."""
    if moment is None:
        return _now_timestamp()
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _now_timestamp() -> str:
    now = time.time()
    second = int(now)
    return f"{_second_text(second)}.{int((now - second) * 1000):03d}Z"


@functools.lru_cache(maxsize=1)  # the router stamps every request: the second is formatted once
def _second_text(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def split_log_timestamp(line: str) -> tuple[str, str]:
    """(timestamp, rest) of a `logs` line; the timestamp is "" when the line has none."""
    stamp, _, rest = line.partition(" ")
    return (stamp, rest) if LOG_TIMESTAMP.fullmatch(stamp) else ("", line)


class RuntimeFailure(UserError):
    """What a runtime reports when it cannot do what was asked: one sentence, plus the
    last lines the failing process printed (already part of the sentence where useful)."""

    def __init__(self, message: str, *, last_lines: Sequence[str] = ()):
        super().__init__(message)
        self.last_lines = tuple(last_lines)


class BuildFailed(RuntimeFailure):
    pass


class BuildTimedOut(BuildFailed):
    """The build ran longer than its timeout (TERESA_BUILD_TIMEOUT) and was stopped."""

    def __init__(self, seconds: int):
        super().__init__(f"The build took longer than {seconds} seconds and was stopped; "
                         "make it faster or raise TERESA_BUILD_TIMEOUT.")
        self.seconds = seconds


def raise_for_build_status(status: int, timeout_seconds: int) -> None:
    """The slugbuilder's exit status as the build's outcome: 0 succeeded, TIMED_OUT its own timer stopped it."""
    if status == TIMED_OUT:
        raise BuildTimedOut(timeout_seconds)
    if status != 0:
        raise BuildFailed(f"The build failed with exit status {status}; see its output above.")


class ReleasePhaseFailed(RuntimeFailure):
    pass


class Fault(enum.Enum):
    """Why one new replica failed a rollout (what the runtime observed, not what the user reads)."""

    EXITED = "exited"            # its process exited (once, or again and again) during the rollout
    UNHEALTHY = "unhealthy"      # its liveness check failed, so it was restarted
    WRONG_PORT = "wrong port"    # it listens, but on other ports than $PORT
    NOT_READY = "not ready"      # still not ready when the rollout's time ran out


@dataclass(frozen=True)
class ReplicaOutcome:
    """What a runtime saw of the replica that failed a rollout; `rollout_sentence` words it."""

    replica: str                        # "web.1" locally, a pod name on Kubernetes
    fault: Fault
    was_ready: bool = False             # it had passed its readiness check before it failed
    exit_status: int | None = None
    restarts: int = 0
    port: int | None = None             # the value of $PORT it was given
    listened: bool = True               # anything ever accepted a connection on $PORT
    other_ports: tuple[int, ...] = ()   # ports it listens on instead (WRONG_PORT)
    check: str = ""                     # the last readiness check, e.g. "GET / returned HTTP 500"
    last_lines: tuple[str, ...] = ()


LAST_LINES_SHOWN = 6


def rollout_sentence(release: str, outcome: ReplicaOutcome, *, timeout: float | None = None) -> str:
    """The one sentence a user reads when `release` was not rolled out because of `outcome`."""
    o = outcome
    status = f" with status {o.exit_status}" if o.exit_status is not None else ""
    again = f" ({o.restarts} times)" if o.restarts > 1 else ""
    port = f"$PORT ({o.port})" if o.port is not None else "$PORT"
    if o.fault is Fault.EXITED:
        when = "within seconds of becoming ready" if o.was_ready else "before it became ready"
        what = f"{o.replica} exited{status}{again} {when}"
    elif o.fault is Fault.UNHEALTHY:
        what = f"{o.replica} failed its liveness check" + (f" ({o.check})" if o.check else "") + " and was restarted"
    elif o.fault is Fault.WRONG_PORT:
        others = ", ".join(str(p) for p in o.other_ports)
        what = (f"{o.replica} listens on port {others} but not on {port}; "
                f"make the web process bind to the port in the PORT environment variable")
    elif o.was_ready:
        within = f" within {timeout:g}s" if timeout is not None else ""
        what = (f"{o.replica} was ready but had not yet stayed up for the stability window{within}; "
                "if the app is slow to start, raise TERESA_ROLLOUT_TIMEOUT")
    else:
        within = f" within {timeout:g}s" if timeout is not None else ""
        what = f"{o.replica} did not become ready{within}" + (f" ({o.check})" if o.check else "")
    if o.fault is not Fault.WRONG_PORT and not o.listened and o.replica.startswith("web"):
        what += f"; nothing ever listened on {port}: the web process must bind to the port in the PORT variable"
    lines = o.last_lines[-LAST_LINES_SHOWN:]
    output = f"; its last output: {' / '.join(lines)}" if lines else "; it printed nothing"
    return f"{release} was not released: {what}{output}. What ran before keeps running."


class RolloutFailed(RuntimeFailure):
    """The new release did not become ready; the runtime has already undone it."""

    @classmethod
    def of(cls, release: str, outcome: ReplicaOutcome, *, timeout: float | None = None) -> "RolloutFailed":
        failure = cls(rollout_sentence(release, outcome, timeout=timeout), last_lines=outcome.last_lines)
        failure.outcome = outcome
        return failure

    outcome: ReplicaOutcome | None = None


class Capability(enum.Flag):
    """What a runtime does beyond the common ground every runtime shares (deploy with rollout and undo, scale,
    restart, run with stdin and a terminal, logs, destroy). The controller's and the server's decisions and
    sentences ask a runtime's `capabilities`, never its name."""

    CRON = enum.auto()               # runs cron* process types on their teresa.yaml schedule
    LIMITS = enum.auto()             # enforces CPU and memory limits (limits:set)
    AUTOSCALE = enum.auto()          # scales a process type on CPU use (autoscale:set)
    GRANT_RENEWAL = enum.auto()      # the storage grants its processes read expire: refresh_grants must run now and then
    ROUTER = enum.auto()             # serves the apps itself, at TERESA_ROUTER_ADDR (else at port 80, behind an Ingress)
    NAMESPACE_PER_APP = enum.auto()  # each app's processes are confined to a namespace of their own
    USER_PER_APP = enum.auto()       # each app's processes run as an OS user of their own, in a sandbox


def release_features(release: ReleaseSpec) -> dict[Capability, str]:
    """What `release` asks for that only a runtime with the capability runs, each as a sentence names it."""
    features: dict[Capability, str] = {}
    if cron := release.cron_types:
        features[Capability.CRON] = f"cron process types ({', '.join(cron)})"
    if release.limits:
        features[Capability.LIMITS] = "CPU and memory limits"
    if release.autoscale:
        features[Capability.AUTOSCALE] = "autoscaling"
    return features


def ignored_features(release: ReleaseSpec, capabilities: Capability) -> str:
    """The features of `release` a runtime with `capabilities` does not run, said plainly ("" when there are none)."""
    return ", ".join(said for needed, said in release_features(release).items() if needed not in capabilities)


@dataclass(frozen=True)
class ProcessStatus:
    type: str
    replica: str          # e.g. "web.1" locally, the pod name on Kubernetes
    state: str            # starting, up, crashed, stopping ...
    restarts: int
    uptime_seconds: float | None
    release: int


class Runtime(Protocol):
    @property
    def capabilities(self) -> Capability:
        """What this runtime does beyond the common ground (see Capability)."""

    async def start(self) -> None:
        """Start background machinery and bring every app back at its current release."""

    async def stop(self) -> None: ...

    async def reconcile(self, wanted: Mapping[str, ReleaseSpec | None]) -> None:
        """After a restart: run each app at its release in `wanted` (None: nothing released), whatever
        the runtime restored; apps not in `wanted` no longer exist."""

    async def refresh_grants(self) -> int:
        """Renew the storage grants (presigned URLs) that running apps' future processes will read; how many."""

    async def health(self) -> None:
        """For /readyz: return when the runtime can take work, raise when it cannot."""

    async def create_app(self, app: str) -> None: ...

    async def destroy_app(self, app: str) -> None: ...

    async def build(self, request: BuildRequest, out: LineSink) -> None:
        """Run the slugbuilder, streaming its lines to `out`; raise BuildFailed."""

    async def release_phase(self, release: ReleaseSpec, out: LineSink) -> None:
        """Run the `release` process once; raise ReleasePhaseFailed."""

    async def deploy(self, release: ReleaseSpec, previous: ReleaseSpec | None, out: LineSink, *,
                     restart: bool = False) -> None:
        """Roll out `release` (every process replaced when `restart`); on failure undo to `previous`
        and raise RolloutFailed."""

    async def ps(self, app: str) -> list[ProcessStatus]: ...

    async def set_domains(self, app: str, domains: Sequence[str], *, tls_secret: str = "") -> None:
        """Route these custom host names to the app, besides APP.<TERESA_DOMAIN>; with TLS from `tls_secret`
        where the runtime terminates TLS (Kubernetes' Ingress)."""

    async def restart(self, app: str, process_type: str | None) -> None: ...

    def logs(self, app: str, lines: int, follow: bool, process_type: str | None) -> AsyncIterator[str]:
        """The app's output, oldest first, each line as `<log_timestamp> <source> | <text>`."""

    async def run(self, release: ReleaseSpec, argv: list[str], stdin: Input, out: Output) -> int:
        """A one-off process with the release's slug and config, in a fresh copy of the slug, never in a
        directory a running process uses; `stdin` is forwarded, and a client's terminal gets a PTY.
        Returns its exit status."""
