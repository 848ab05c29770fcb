"""The contract between the controller and a runtime (local processes or Kubernetes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, Mapping, Protocol, Sequence

from builder.job import BuildRequest
from controller.spec import ReleaseSpec
from core.errors import UserError

# Where a runtime writes lines for the user (build output, rollout progress).
# Each call is one line without its newline; it may await (backpressure).
LineSink = Callable[[str], Awaitable[None]]


class RuntimeFailure(UserError):
    """What a runtime reports when it cannot do what was asked: one sentence, plus the
    last lines the failing process printed (already part of the sentence where useful)."""

    def __init__(self, message: str, *, last_lines: Sequence[str] = ()):
        super().__init__(message)
        self.last_lines = tuple(last_lines)


class BuildFailed(RuntimeFailure):
    pass


class ReleasePhaseFailed(RuntimeFailure):
    pass


class RolloutFailed(RuntimeFailure):
    """The new release did not become ready; the runtime has already undone it."""


@dataclass(frozen=True)
class ProcessStatus:
    type: str
    replica: str          # e.g. "web.1" locally, the pod name on Kubernetes
    state: str            # starting, up, crashed, stopping ...
    restarts: int
    uptime_seconds: float | None
    release: int


class Runtime(Protocol):
    async def start(self) -> None:
        """Start background machinery and bring every app back at its current release."""

    async def stop(self) -> None: ...

    async def reconcile(self, wanted: Mapping[str, ReleaseSpec | None]) -> None:
        """After a restart: run each app at its release in `wanted` (None: nothing released), whatever
        the runtime restored; apps not in `wanted` no longer exist."""

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

    async def set_domains(self, app: str, domains: Sequence[str]) -> None:
        """Route these custom host names to the app, besides APP.<TERESA_DOMAIN>."""

    async def restart(self, app: str, process_type: str | None) -> None: ...

    def logs(self, app: str, lines: int, follow: bool, process_type: str | None) -> AsyncIterator[str]: ...

    async def run(self, release: ReleaseSpec, argv: list[str], out: LineSink) -> int:
        """A one-off process with the release's slug and config; returns its exit status."""
