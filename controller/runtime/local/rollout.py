"""Rolling updates with Kubernetes semantics: maxSurge, maxUnavailable and readiness gating.

Deploys, scaling and restarts all go through `Rollout`: replicas that already run
what the new release would run are adopted (so a pure scale touches nothing
else), the rest are replaced a few at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from pathlib import Path

from controller.runtime.base import LineSink, RolloutFailed
from controller.runtime.local.supervisor import AppSupervisor, Replica
from controller.spec import ReleaseSpec

INDENT = "       "


def runs_the_same(a: ReleaseSpec, b: ReleaseSpec, process_type: str) -> bool:
    """Whether a replica of `process_type` started for `a` is exactly what `b` would start."""
    def key(r: ReleaseSpec) -> tuple[object, ...]:
        return r.slug_key, r.config, r.processes.get(process_type), r.spec.liveness, r.spec.readiness
    return key(a) == key(b)


class Rollout:
    def __init__(self, supervisor: AppSupervisor, release: ReleaseSpec, app_dir: Path, out: LineSink,
                 restart: Collection[str] = ()) -> None:
        self.sup = supervisor
        self.release = release
        self.app_dir = app_dir
        self.out = out
        self.messages: list[str] = []
        self.new: dict[str, list[Replica]] = {t: [] for t in release.long_running_types}
        self.started: list[Replica] = []
        self.adopted: dict[Replica, ReleaseSpec] = {}
        self.announced: set[Replica] = set()
        # For an undo: how many replicas of each type ran, and one of them to copy.
        self.before = {t: (len(self.sup.live(t)), self.sup.live(t)[0]) for t in self._types() if self.sup.live(t)}
        for replica in self.sup.live():
            t = replica.process_type
            if t in self.new and t not in restart and runs_the_same(replica.release, release, t):
                self.adopted[replica] = replica.release
                replica.release = release
                self.new[t].append(replica)

    async def run(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while not self._step_all():
                await self._flush()
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise RolloutFailed(self._reason(timeout))
                await self.sup.wait_changed(min(remaining, 1.0))
            await self._flush()
        except RolloutFailed:
            self._undo()
            await self._flush()
            await self.sup.wait_retired()
            raise
        except BaseException:
            self._undo()
            raise
        # Retired replicas are out of rotation and drain in the background: like `kubectl rollout
        # status`, which does not wait for terminating pods, a push returns once the new release serves.

    def _types(self) -> list[str]:
        return sorted(set(self.new) | {r.process_type for r in self.sup.live()})

    def _step_all(self) -> bool:
        return all([self._step(t) for t in self._types()])

    def _step(self, process_type: str) -> bool:
        wanted = self.release.replicas(process_type) if process_type in self.new else 0
        surge, unavailable = self.release.spec.rolling_update.resolve(wanted)
        new = self.new.setdefault(process_type, [])
        for replica in sorted(new, key=lambda r: r.available)[: max(0, len(new) - wanted)]:
            new.remove(replica)
            self._retire(replica)
        old = [r for r in self.sup.live(process_type) if r not in new]
        for _ in range(min(wanted - len(new), wanted + surge - len(old) - len(new))):
            replica = self.sup.add(self.release, process_type, self.app_dir)
            self.started.append(replica)
            new.append(replica)
            self.messages.append(f"{INDENT}Starting {replica.name} ({self.release.label})")
        available = sum(r.available for r in old + new)
        for replica in sorted(old, key=lambda r: r.available):
            if wanted == 0 or not replica.available or available > wanted - unavailable:
                available -= replica.available
                old.remove(replica)
                self._retire(replica)
        for replica in new:
            if replica.available and replica in self.started and replica not in self.announced:
                self.announced.add(replica)
                self.messages.append(f"{INDENT}{replica.name} is ready")
        return not old and len(new) == wanted and all(r.available for r in new)

    def _retire(self, replica: Replica) -> None:
        self.messages.append(f"{INDENT}Stopping {replica.name} ({replica.release.label})")
        self.sup.retire(replica)

    def _undo(self) -> None:
        for replica in self.started:
            if replica in self.sup.replicas:
                self.sup.retire(replica)
        for replica, release in self.adopted.items():
            replica.release = release
        for process_type, (count, example) in self.before.items():
            for _ in range(count - len(self.sup.live(process_type))):
                self.sup.add(example.release, process_type, example.app_dir)

    def _reason(self, timeout: float) -> str:
        pending = [r for replicas in self.new.values() for r in replicas if not r.available]
        head = f"{self.release.label} did not become ready within {timeout:g}s and was rolled back"
        if not pending:
            return f"{head}: the old processes did not leave rotation in time."
        replica = pending[0]
        crashed = f", exited with status {replica.last_exit}" if replica.last_exit is not None else ""
        restarts = f" after {replica.restarts} restarts" if replica.restarts else ""
        lines = self.sup.logs.last_lines(replica.name, 3)
        output = f"; its last output: {' / '.join(lines)}" if lines else "; it printed nothing"
        return f"{head}: {replica.name} is {replica.state}{crashed}{restarts} ({replica.last_check}){output}."

    async def _flush(self) -> None:
        messages, self.messages = self.messages, []
        for line in messages:
            await self.out(line)
