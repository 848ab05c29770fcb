"""Rolling updates with Kubernetes semantics: maxSurge, maxUnavailable, readiness gating, minReadySeconds.

Deploys, scaling and restarts all go through `Rollout`: replicas that already run
what the new release would run are adopted (so a pure scale touches nothing
else), the rest are replaced a few at a time. A new replica takes the number
(web.1, web.2 ...) of none of the other new ones, so N replicas are web.1 to
web.N again once the old ones are gone.

A rollout fails as soon as a new replica exits (once, or in a loop) or listens
on other ports than $PORT, and otherwise when the rollout timeout runs out; it
reports a `ReplicaOutcome` and the sentence is worded by `rollout_sentence`.
While it waits it prints what changed, and every `progress_interval` what it
still waits for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from pathlib import Path

from controller.runtime.base import Fault, LineSink, ReplicaOutcome, RolloutFailed
from controller.runtime.local.supervisor import AppSupervisor, Replica, lowest_free
from controller.spec import ReleaseSpec

INDENT = "       "


def runs_the_same(a: ReleaseSpec, b: ReleaseSpec, process_type: str) -> bool:
    """Whether a replica of `process_type` started for `a` is exactly what `b` would start."""
    def key(r: ReleaseSpec) -> tuple[object, ...]:
        return r.slug_key, r.config, r.processes.get(process_type), r.spec.liveness, r.spec.readiness
    return key(a) == key(b)


def outcome(replica: Replica, fault: Fault) -> ReplicaOutcome:
    return ReplicaOutcome(
        replica=replica.name, fault=fault, exit_status=replica.last_exit,
        was_ready=replica.serving if fault is Fault.NOT_READY else replica.ever_ready,
        restarts=replica.restarts, port=replica.port, listened=replica.listened, other_ports=replica.other_ports,
        check=replica.last_check, last_lines=tuple(replica.tail),
    )


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
        self.restarts_seen: dict[Replica, int] = {r: r.restarts for r in self.sup.live()}
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
        said_at = loop.time()
        try:
            while not self._step_all():
                if failed := self._failure():
                    raise RolloutFailed.of(self.release.label, failed)
                now = loop.time()
                if self.messages:
                    said_at = now
                elif now - said_at >= self.sup.timings.progress_interval:
                    self.messages.append(self._waiting_line())
                    said_at = now
                await self._flush()
                remaining = deadline - now
                if remaining <= 0:
                    raise self._timed_out(timeout)
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
        # Scaling down stops the highest numbers, so what is left is web.1 ... web.N.
        for replica in sorted(new, key=lambda r: (r.available, -r.index))[: max(0, len(new) - wanted)]:
            new.remove(replica)
            self._retire(replica)
        old = [r for r in self.sup.live(process_type) if r not in new]
        for _ in range(min(wanted - len(new), wanted + surge - len(old) - len(new))):
            index = lowest_free({r.index for r in new})
            replica = self.sup.add(self.release, process_type, self.app_dir, index)
            self.started.append(replica)
            new.append(replica)
            self.messages.append(f"{INDENT}Starting {replica.name} ({self.release.label})")
        available = sum(r.available for r in old + new)
        for replica in sorted(old, key=lambda r: r.available):
            if wanted == 0 or not replica.available or available > wanted - unavailable:
                available -= replica.available
                old.remove(replica)
                self._retire(replica)
        self._note_changes(old + new)
        return not old and len(new) == wanted and all(r.available for r in new)

    def _note_changes(self, replicas: list[Replica]) -> None:
        for replica in replicas:
            if replica.available and replica in self.started and replica not in self.announced:
                self.announced.add(replica)
                self.messages.append(f"{INDENT}{replica.name} is ready")
            if replica.restarts > self.restarts_seen.get(replica, 0):
                self.restarts_seen[replica] = replica.restarts
                if replica not in self.started:  # a new one that exits fails the rollout instead
                    self.messages.append(f"{INDENT}{replica.name} ({replica.release.label}) exited with status "
                                         f"{replica.last_exit}; restarting")

    def _failure(self) -> ReplicaOutcome | None:
        """A new replica that will not do: it exited, or it listens on the wrong port for long enough."""
        grace = self.sup.timings.wrong_port_grace
        for replica in self.started:
            if replica.restarts:
                return outcome(replica, Fault.UNHEALTHY if replica.unhealthy else Fault.EXITED)
            if replica.on_wrong_port_for() >= grace:
                return outcome(replica, Fault.WRONG_PORT)
        return None

    def _pending(self) -> list[Replica]:
        return [r for replicas in self.new.values() for r in replicas if not r.available]

    def _waiting_line(self) -> str:
        parts = []
        for replica in self._pending():
            if replica.serving:
                parts.append(f"{replica.name} ready, making sure it stays up")
            else:
                parts.append(f"{replica.name} {replica.state} for {replica.status().uptime_seconds or 0:.0f}s "
                             f"({replica.last_check})")
        waiting = "; ".join(parts) or "the old processes to leave rotation"
        return f"{INDENT}Waiting for {waiting}"

    def _timed_out(self, timeout: float) -> RolloutFailed:
        pending = self._pending()
        if not pending:
            return RolloutFailed(f"{self.release.label} was not released: the old processes did not leave rotation "
                                 f"within {timeout:g}s. What ran before keeps running.")
        return RolloutFailed.of(self.release.label, outcome(pending[0], Fault.NOT_READY), timeout=timeout)

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

    async def _flush(self) -> None:
        messages, self.messages = self.messages, []
        for line in messages:
            await self.out(line)
