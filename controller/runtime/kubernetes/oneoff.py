"""One-off pods (slugbuilder, release phase, run): create, wait for start, stream the log, read the exit code, delete.

`run` also attaches to its pod, to forward stdin and, for a terminal, its output: see attach.py.

The pod and the objects made for it are deleted in every case: success,
failure, timeout and cancellation (the deletion is shielded, so a client that
disconnects mid-build still gets its pod cleaned up).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from controller.runtime.kubernetes import podstate
from controller.runtime.kubernetes.client import KubeClient, KubeError
from controller.runtime.kubernetes.logstream import LogCursor, follow_lines, tail
from controller.runtime.kubernetes.objects import LiveObject, Manifest, Pod
from core import log

logger = log.get("runtime.kubernetes")
TAIL_LINES = 5


class PodFailed(Exception):
    """The pod could not run its command; the message is a phrase ("the image x could not be pulled")."""


class PodDeadline(PodFailed):
    """The pod ran past its activeDeadlineSeconds and the kubelet stopped it."""


@dataclass
class OneOffPod:
    kube: KubeClient
    pod: Pod
    container: str
    poll_interval: float = 1.0
    start_grace: float = 180.0  # how long the pod may be Unschedulable or fail to pull its image
    extra: list[Manifest] = field(default_factory=list)  # created first, deleted with the pod
    last_lines: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.pod["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.pod["metadata"]["namespace"]

    async def run(self, out: Callable[[str], Awaitable[None]]) -> int:
        """The container's exit code; its lines go to `out` as they arrive. Raises PodFailed, KubeError."""
        async with self.started():
            return await self.follow(out)

    @contextlib.asynccontextmanager
    async def started(self) -> AsyncIterator[None]:
        """The pod created and its container started (or already ended); deleted on the way out."""
        try:
            for obj in self.extra:
                await self.kube.create(obj)
            await self.kube.create(self.pod)
            await self._wait_started()
            yield
        finally:
            await asyncio.shield(self.delete())

    async def exit_status(self) -> int:
        """The container's exit code, once it has ended."""
        while (ended := self._ended(await self._read())) is None:
            await asyncio.sleep(self.poll_interval)
        return int(ended.get("exitCode", 1))

    def _ended(self, pod: LiveObject) -> LiveObject | None:
        """The container's terminated state, once it has ended; raises PodDeadline when the kubelet stopped it."""
        if (pod.get("status") or {}).get("reason") == "DeadlineExceeded":
            raise PodDeadline("it ran past its deadline and was stopped")
        return podstate.terminated(pod, self.container)

    async def delete(self) -> None:
        for obj in [self.pod, *self.extra]:
            meta = obj["metadata"]
            try:
                await self.kube.delete(obj["apiVersion"], obj["kind"], meta["name"], meta["namespace"])
            except KubeError as exc:
                logger.warning("one-off object not deleted", kind=obj["kind"], name=meta["name"], error=str(exc))

    async def _read(self) -> LiveObject:
        pod = await self.kube.get("v1", "Pod", self.name, self.namespace)
        if pod is None:
            raise PodFailed("its pod was deleted by someone else")
        return pod

    async def _wait_started(self) -> None:
        patience = podstate.Patience(self.start_grace)
        while True:
            pod = await self._read()
            if failed := podstate.failed_init(pod):
                lines = await tail(self.kube, self.namespace, self.name, failed[0], TAIL_LINES)
                shown = f"; last output: {' / '.join(lines)}" if lines else ""
                raise PodFailed(f"its {failed[0]} step failed with exit status {failed[1]}{shown}")
            if problem := patience.verdict(self.name, podstate.start_problem(pod)):
                raise PodFailed(problem)
            if podstate.started(pod, self.container):
                return
            await asyncio.sleep(self.poll_interval)

    async def follow(self, out: Callable[[str], Awaitable[None]]) -> int:
        """Relay the container's log lines to `out` until it ends; its exit code."""
        cursor = LogCursor()

        async def relay(line: str) -> None:
            self.last_lines = [*self.last_lines[-(TAIL_LINES - 1):], line]
            await out(line)

        while True:
            end = await follow_lines(self.kube, self.namespace, self.name, self.container, cursor, relay)
            ended = self._ended(await self._read())
            if ended is not None:
                if not end.clean:  # dropped just before the end: catch up on what it missed
                    await follow_lines(self.kube, self.namespace, self.name, self.container, cursor, relay,
                                       follow=False)
                return int(ended.get("exitCode", 1))
            if not end.clean:
                logger.info("log stream dropped; reconnecting", pod=self.name, error=end.error)
            await asyncio.sleep(self.poll_interval)
