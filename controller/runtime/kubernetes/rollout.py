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
LOG_WAIT = 15.0   # seconds a crashed container's log is awaited
LOG_RETRY = 0.5
POD_TEMPLATE_HASH = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"


@dataclass(frozen=True)
class Progress:
    name: str
    replicas: int
    updated: int
    available: int
    complete: bool
    deadline_exceeded: bool
    observed: bool = True  # the controller has seen the current generation: the status is about it
    replica_failure: str = ""  # a ReplicaFailure condition's message (pods cannot even be created)
    ready: int = 0

    @property
    def counts(self) -> tuple[int, int, int, int]:
        """What changes when a rollout progresses, as the Deployment controller counts progress: replicas
        created or updated, pods that became ready or available."""
        return self.replicas, self.updated, self.ready, self.available

    @property
    def line(self) -> str:
        return f"       {self.name}: {self.updated} of {self.replicas} updated, {self.available} available"


def progress(deployment: LiveObject) -> Progress:
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    replicas = spec.get("replicas", 1)
    updated, available = status.get("updatedReplicas", 0), status.get("availableReplicas", 0)
    # Like `kubectl rollout status`: nothing in the status counts until it describes the current generation.
    observed = status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
    conditions = (status.get("conditions") or []) if observed else []
    complete = (
        observed
        and updated == replicas and available == replicas
        and status.get("replicas", 0) == replicas and not status.get("unavailableReplicas", 0)
    )
    stalled = any(
        (c.get("type"), c.get("status"), c.get("reason")) == ("Progressing", "False", "ProgressDeadlineExceeded")
        for c in conditions
    )
    failure = next((c.get("message") or c.get("reason") or "ReplicaFailure" for c in conditions
                    if (c.get("type"), c.get("status")) == ("ReplicaFailure", "True")), "")
    return Progress(deployment["metadata"]["name"], replicas, updated, available, complete, stalled,
                    observed, failure, status.get("readyReplicas", 0))


class Stalled(Exception):
    """A Deployment did not complete; the message is a phrase following its name ("web made no progress ...")."""

    def __init__(self, name: str, reason: str, needs_diagnosis: bool = True) -> None:
        super().__init__(reason)
        self.name = name
        self.needs_diagnosis = needs_diagnosis


async def watch(kube: KubeClient, namespace: str, names: list[str], out: Callable[[str], Awaitable[None]], *,
                timeout: float, poll_interval: float, start_grace: float) -> None:
    """Until every named Deployment is complete; raises Stalled (no progress for `timeout` seconds, its deadline
    exceeded, or pods that cannot start: at once, or after `start_grace` seconds when that is normal for a while)."""
    shown: dict[str, str] = {}
    counted: dict[str, tuple[int, int, int, int]] = {}
    last_progress = dict.fromkeys(names, time.monotonic())
    patience = podstate.Patience(start_grace)
    pending = list(names)
    while pending:
        for name in list(pending):
            deployment = await kube.get("apps/v1", "Deployment", name, namespace)
            if deployment is None:
                raise Stalled(name, "was deleted during the rollout", needs_diagnosis=False)
            state = progress(deployment)
            if counted.get(name) != state.counts:
                counted[name], last_progress[name] = state.counts, time.monotonic()
            if shown.get(name) != state.line:
                shown[name] = state.line
                await out(state.line)
            if state.complete:
                pending.remove(name)
            elif not state.observed:
                pass  # the controller has not seen this generation yet: its status and pods are the old ones
            elif state.replica_failure:
                raise Stalled(name, f"cannot create its pods ({state.replica_failure})", needs_diagnosis=False)
            elif state.deadline_exceeded:
                raise Stalled(name, "made no progress within its deadline")
            elif problem := await _start_problem(kube, namespace, deployment, patience):
                raise Stalled(name, f"cannot start its pods ({problem})", needs_diagnosis=False)
            elif crashed := await _crashed(kube, namespace, deployment):
                raise Stalled(name, f"has a replica that exited ({crashed})")
        for name in pending:
            if time.monotonic() - last_progress[name] > timeout:
                raise Stalled(name, f"made no progress for {timeout:g} seconds")
        if pending:
            await asyncio.sleep(poll_interval)


async def _pods(kube: KubeClient, namespace: str, deployment: LiveObject) -> list[LiveObject]:
    """The pods of the Deployment's current (new) ReplicaSet only: the old ones' troubles are not this rollout's."""
    labels = dict((deployment["spec"].get("selector") or {}).get("matchLabels") or {})
    if not labels:
        return []
    template_hash = await _new_template_hash(kube, namespace, deployment, labels)
    if template_hash:
        labels[POD_TEMPLATE_HASH] = template_hash
    else:  # no ReplicaSet to go by (an API without the controller): the pods carrying the template's labels
        labels.update(((deployment["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {})
    return await kube.list("v1", "Pod", namespace, labels=labels)


async def _new_template_hash(kube: KubeClient, namespace: str, deployment: LiveObject,
                             labels: dict[str, str]) -> str:
    """The pod-template-hash of the ReplicaSet the controller made for the Deployment's current revision."""
    revision = (deployment["metadata"].get("annotations") or {}).get(REVISION)
    uid = deployment["metadata"].get("uid")
    if not revision or not uid:
        return ""
    for replica_set in await kube.list("apps/v1", "ReplicaSet", namespace, labels=labels):
        meta = replica_set["metadata"]
        owned = any(ref.get("uid") == uid for ref in meta.get("ownerReferences") or [])
        if owned and (meta.get("annotations") or {}).get(REVISION) == revision:
            template_hash: str = (meta.get("labels") or {}).get(POD_TEMPLATE_HASH, "")
            return template_hash
    return ""


async def _start_problem(kube: KubeClient, namespace: str, deployment: LiveObject,
                         patience: podstate.Patience) -> str | None:
    """Pods whose image cannot be pulled, container not created or that no node can run, once `patience` says so."""
    for pod in await _pods(kube, namespace, deployment):
        name = pod["metadata"]["name"]
        problem = podstate.unschedulable(pod) or podstate.container_problem(pod)
        if verdict := patience.verdict(name, problem):
            return f"pod {name}: {verdict}"
    return None


def _failed(status: LiveObject, init: bool) -> bool:
    """A container that stopped when it should not have: a long-running one that stopped at all (restarted,
    terminated, backing off), an init container that exited non-zero or had to be restarted."""
    state, details = podstate.state_of(status)
    if status.get("restartCount", 0) > 0 or details.get("reason") == "CrashLoopBackOff":
        return True
    return state == "terminated" and (not init or details.get("exitCode", 0) != 0)


def _failing_container(pod: LiveObject) -> tuple[str, LiveObject] | None:
    """(name, status) of the pod's first failing container, init containers first (they run first)."""
    for init in (True, False):
        for status in podstate.statuses(pod, init=init):
            if _failed(status, init):
                return status["name"], status
    return None


async def _crashed(kube: KubeClient, namespace: str, deployment: LiveObject) -> str | None:
    """A new replica whose container (or init container) exited: the rollout fails at once, not at its deadline."""
    for pod in await _pods(kube, namespace, deployment):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        if failing := _failing_container(pod):
            return f"pod {pod['metadata']['name']}, container {failing[0]}"
    return None


async def diagnose(kube: KubeClient, namespace: str, deployment_name: str) -> str:
    """Why the Deployment's new pods are not ready, with the last log lines of the failing container."""
    deployment = await kube.get("apps/v1", "Deployment", deployment_name, namespace)
    if deployment is None:
        return ""
    failing = [p for p in await _pods(kube, namespace, deployment)
               if not podstate.is_ready(p) and not p["metadata"].get("deletionTimestamp")]
    crashed = [p for p in failing if _failing_container(p)]
    if not (crashed or failing):
        return ""
    pod = (crashed or failing)[0]
    reasons, previous = [], False
    container = (pod.get("spec") or {}).get("containers", [{}])[0].get("name", "")
    if found := _failing_container(pod):
        container = found[0]  # an init container's failure is in its own log, not the main container's
    for init in (True, False):
        for status in podstate.statuses(pod, init=init):
            state, details = podstate.state_of(status)
            last = (status.get("lastState") or {}).get("terminated") or {}
            if problem := podstate.waiting_problem(pod, status):
                reasons.append(problem.phrase)
            elif _failed(status, init):
                code = last.get("exitCode", details.get("exitCode"))
                restarts = status.get("restartCount", 0)
                how = "keeps crashing" if restarts else "exited"
                what = f"its init container {status['name']}" if init else "it"
                reasons.append(f"{what} {how} ({details.get('reason') or state}, exit status {code}, "
                               f"{restarts} restart{'' if restarts == 1 else 's'})")
                if status["name"] == container:
                    previous = state != "terminated" and bool(last)
            elif not init and state == "running" and not status.get("ready"):
                probe = _readiness_check(pod, status["name"])
                reasons.append(f"its readiness check{probe} never passed")
    name = pod["metadata"]["name"]
    lines = await last_lines(kube, namespace, name, container, previous, wait=LOG_WAIT if crashed else 0.0)
    said = f"pod {name}: {'; '.join(reasons) or 'not ready'}"
    if lines:
        return f"{said}; last output: {' / '.join(lines)}"
    return said + ("; its log could not be read (it printed nothing, or the log was already gone)" if crashed else "")


async def last_lines(kube: KubeClient, namespace: str, pod: str, container: str, previous: bool,
                     wait: float) -> list[str]:
    """The crashed container's last lines, read until they are there or `wait` seconds have passed.

    Right after a crash the kubelet may already be restarting the container (the status read a moment
    ago says terminated, the current log is the new container's, still empty) or may not yet serve the
    old one: both logs are tried, again and again, as the restart goes on."""
    deadline = time.monotonic() + wait
    while True:
        for which in (previous, not previous):
            if lines := await tail(kube, namespace, pod, container, TAIL_LINES, previous=which):
                return lines
        if time.monotonic() >= deadline:
            return []
        await asyncio.sleep(LOG_RETRY)


def _readiness_check(pod: LiveObject, container: str) -> str:
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == container and (probe := c.get("readinessProbe")):
            if "tcpSocket" in probe:
                return " (a connection to $PORT)"
            return f" (GET {probe.get('httpGet', {}).get('path', '/')})"
    return ""

