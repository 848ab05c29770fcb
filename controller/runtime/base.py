"""The contract between the controller and a runtime (local processes or Kubernetes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, Mapping, Protocol, Sequence

from controller.spec import ReleaseSpec
from core.commands import CommandError

# Where a runtime writes lines for the user (build output, rollout progress).
# Each call is one line without its newline; it may await (backpressure).
LineSink = Callable[[str], Awaitable[None]]


class RuntimeError_(CommandError):
    """Base of the failures a runtime reports to the user; the message is one sentence."""


class BuildFailed(RuntimeError_):
    pass


class ReleasePhaseFailed(RuntimeError_):
    pass


class RolloutFailed(RuntimeError_):
    """The new release did not become ready; the runtime has already undone it."""


@dataclass(frozen=True)
class ProcessStatus:
    type: str
    replica: str          # e.g. "web.1" locally, the pod name on Kubernetes
    state: str            # starting, up, crashed, stopping ...
    restarts: int
    uptime_seconds: float | None
    release: int


@dataclass(frozen=True)
class BuildRequest:
    app: str
    build_id: str
    source_key: str
    slug_key: str
    cache_key: str
    config: Mapping[str, str]
    buildpack_url: str = ""
    timeout_seconds: int = 15 * 60


class Runtime(Protocol):
    async def start(self) -> None:
        """Start background machinery and bring every app back at its current release."""

    async def stop(self) -> None: ...

    async def create_app(self, app: str) -> None: ...

    async def destroy_app(self, app: str) -> None: ...

    async def build(self, request: BuildRequest, out: LineSink) -> None:
        """Run the slugbuilder, streaming its lines to `out`; raise BuildFailed."""

    async def release_phase(self, release: ReleaseSpec, out: LineSink) -> None:
        """Run the `release` process once; raise ReleasePhaseFailed."""

    async def deploy(self, release: ReleaseSpec, previous: ReleaseSpec | None, out: LineSink) -> None:
        """Roll out `release`; on failure undo to `previous` and raise RolloutFailed."""

    async def ps(self, app: str) -> list[ProcessStatus]: ...

    async def set_domains(self, app: str, domains: Sequence[str]) -> None:
        """Route these custom host names to the app, besides APP.<TERESA_DOMAIN>."""

    async def restart(self, app: str, process_type: str | None) -> None: ...

    def logs(self, app: str, lines: int, follow: bool, process_type: str | None) -> AsyncIterator[str]: ...

    async def run(self, release: ReleaseSpec, argv: list[str], out: LineSink) -> int:
        """A one-off process with the release's slug and config; returns its exit status."""
