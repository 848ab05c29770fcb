"""Watching Deployments roll out: progress lines, completion, stalls and why they stalled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from controller.runtime.kubernetes import podstate
from controller.runtime.kubernetes.client import KubeClient
from controller.runtime.kubernetes.logstream import tail
from controller.runtime.kubernetes.objects import LiveObject

TAIL_LINES = 5


@dataclass(frozen=True)
class Progress:
    name: str
    replicas: int
    updated: int
    available: int
    complete: bool
    deadline_exceeded: bool

    @property
    def line(self) -> str:
        return f"       {self.name}: {self.updated} of {self.replicas} updated, {self.available} available"


def progress(deployment: LiveObject) -> Progress:
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    replicas = spec.get("replicas", 1)
    updated, available = status.get("updatedReplicas", 0), status.get("availableReplicas", 0)
    complete = (
        status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
        and updated == replicas and available == replicas
        and status.get("replicas", 0) == replicas and not status.get("unavailableReplicas", 0)
    )
    stalled = any(
        (c.get("type"), c.get("status"), c.get("reason")) == ("Progressing", "False", "ProgressDeadlineExceeded")
        for c in status.get("conditions") or []
    )
    return Progress(deployment["metadata"]["name"], replicas, updated, available, complete, stalled)


class Stalled(Exception):
    """A Deployment did not complete; the message is a phrase following its name ("web made no progress ...")."""

    def __init__(self, name: str, reason: str, needs_diagnosis: bool = True) -> None:
        super().__init__(reason)
        self.name = name
        self.needs_diagnosis = needs_diagnosis


async def watch(kube: KubeClient, namespace: str, names: list[str], out: Callable[[str], Awaitable[None]],
                timeout: float, poll_interval: float) -> None:
    """Until every named Deployment is complete; raises Stalled (deadline exceeded, timeout, or pods that cannot start)."""
    deadline = time.monotonic() + timeout
    shown: dict[str, str] = {}
    pending = list(names)
    while pending:
        for name in list(pending):
            deployment = await kube.get("apps/v1", "Deployment", name, namespace)
            if deployment is None:
                raise Stalled(name, "was deleted during the rollout", needs_diagnosis=False)
            state = progress(deployment)
            if shown.get(name) != state.line:
                shown[name] = state.line
                await out(state.line)
            if state.complete:
                pending.remove(name)
            elif state.deadline_exceeded:
                raise Stalled(name, "made no progress within its deadline")
            elif problem := await _start_problem(kube, namespace, deployment):
                raise Stalled(name, f"cannot start its pods ({problem})", needs_diagnosis=False)
        if pending and time.monotonic() > deadline:
            raise Stalled(pending[0], f"was not ready after {timeout:g} seconds")
        if pending:
            await asyncio.sleep(poll_interval)


async def _pods(kube: KubeClient, namespace: str, deployment: LiveObject) -> list[LiveObject]:
    labels = (deployment["spec"].get("selector") or {}).get("matchLabels") or {}
    if not labels:
        return []
    return await kube.list("v1", "Pod", namespace, labels=labels)


async def _start_problem(kube: KubeClient, namespace: str, deployment: LiveObject) -> str | None:
    """Pods whose image cannot be pulled or container not created will not recover by waiting: fail fast."""
    for pod in await _pods(kube, namespace, deployment):
        for status in podstate.statuses(pod, init=True) + podstate.statuses(pod):
            if problem := podstate.waiting_problem(pod, status):
                return f"pod {pod['metadata']['name']}: {problem}"
    return None


async def diagnose(kube: KubeClient, namespace: str, deployment_name: str) -> str:
    """Why the Deployment's pods are not ready, with the last log lines of one failing pod."""
    deployment = await kube.get("apps/v1", "Deployment", deployment_name, namespace)
    if deployment is None:
        return ""
    failing = [p for p in await _pods(kube, namespace, deployment)
               if not podstate.is_ready(p) and not p["metadata"].get("deletionTimestamp")]
    if not failing:
        return ""
    pod = failing[0]
    reasons, previous = [], False
    container = (pod.get("spec") or {}).get("containers", [{}])[0].get("name", "")
    for status in podstate.statuses(pod, init=True) + podstate.statuses(pod):
        state, details = podstate.state_of(status)
        last = (status.get("lastState") or {}).get("terminated") or {}
        if problem := podstate.waiting_problem(pod, status):
            reasons.append(problem)
        elif details.get("reason") == "CrashLoopBackOff" or status.get("restartCount", 0) > 0:
            code = last.get("exitCode", details.get("exitCode"))
            reasons.append(f"it keeps crashing (CrashLoopBackOff, exit status {code}, "
                           f"{status.get('restartCount', 0)} restarts)")
            previous = state != "running"
        elif state == "running" and not status.get("ready"):
            probe = _readiness_path(pod, status["name"])
            reasons.append(f"its readiness check{probe} never passed")
    lines = await tail(kube, namespace, pod["metadata"]["name"], container, TAIL_LINES, previous=previous)
    if not lines and previous:
        lines = await tail(kube, namespace, pod["metadata"]["name"], container, TAIL_LINES)
    said = f"pod {pod['metadata']['name']}: {'; '.join(reasons) or 'not ready'}"
    return said + (f"; last output: {' / '.join(lines)}" if lines else "")


def _readiness_path(pod: LiveObject, container: str) -> str:
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == container and (probe := c.get("readinessProbe")):
            return f" (GET {probe.get('httpGet', {}).get('path', '/')})"
    return ""

