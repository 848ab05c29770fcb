"""Reading a pod's status: has it started, why it cannot, how it ended."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from controller.runtime.kubernetes.objects import LiveObject

# Waiting reasons after which a container will not start without someone changing something.
IMAGE_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
# ... except these, which a registry's hiccup or a node still pulling can cause: judged after a grace period.
TRANSIENT_IMAGE_FAILURES = ("ErrImagePull", "ImagePullBackOff")
CONFIG_FAILURES = ("CreateContainerConfigError", "CreateContainerError")


@dataclass(frozen=True)
class Problem:
    """Why a pod does not start, as a phrase; `transient` when it is normal for a while on an autoscaled cluster
    (no node yet: the autoscaler adds one; an image pull that failed once: the kubelet retries)."""

    phrase: str
    transient: bool = False


@dataclass
class Patience:
    """Transient problems count once a pod has had them for `grace` seconds (since first seen); others at once."""

    grace: float
    since: dict[str, float] = field(default_factory=dict)

    def verdict(self, pod: str, problem: Problem | None) -> str | None:
        if problem is None:
            self.since.pop(pod, None)
            return None
        if not problem.transient:
            return problem.phrase
        first = self.since.setdefault(pod, time.monotonic())
        if time.monotonic() - first < self.grace:
            return None
        return f"{problem.phrase}, for {self.grace:g} seconds (TERESA_POD_START_GRACE)"


def statuses(pod: LiveObject, init: bool = False) -> list[LiveObject]:
    return (pod.get("status") or {}).get("initContainerStatuses" if init else "containerStatuses") or []


def container_status(pod: LiveObject, name: str) -> LiveObject:
    for status in statuses(pod) + statuses(pod, init=True):
        if status.get("name") == name:
            return status
    return {}


def state_of(status: LiveObject) -> tuple[str, LiveObject]:
    """("running" | "waiting" | "terminated" | "", details)."""
    for name, details in (status.get("state") or {}).items():
        if details is not None:
            return name, details
    return "", {}


def terminated(pod: LiveObject, container: str) -> LiveObject | None:
    state, details = state_of(container_status(pod, container))
    return details if state == "terminated" else None


def started(pod: LiveObject, container: str) -> bool:
    return state_of(container_status(pod, container))[0] in ("running", "terminated")


def image_of(pod: LiveObject, container: str) -> str:
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if c.get("name") == container:
            image: str = c.get("image", "")
            return image
    return ""


def waiting_problem(pod: LiveObject, status: LiveObject) -> Problem | None:
    """Why a waiting container will not start; None while it may still start."""
    state, details = state_of(status)
    reason = details.get("reason", "")
    message = details.get("message", "").strip()
    if state != "waiting":
        return None
    if reason in IMAGE_FAILURES:
        image = image_of(pod, status.get("name", ""))
        return Problem(f"the image {image} could not be pulled ({reason}{': ' + message if message else ''})",
                       transient=reason in TRANSIENT_IMAGE_FAILURES)
    if reason in CONFIG_FAILURES:
        return Problem(f"its container could not be created ({reason}{': ' + message if message else ''})")
    return None


def unschedulable(pod: LiveObject) -> Problem | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if (condition.get("type"), condition.get("status"), condition.get("reason")) == (
                "PodScheduled", "False", "Unschedulable"):
            return Problem(f"no node can run it ({condition.get('message') or 'Unschedulable'})", transient=True)
    return None


def container_problem(pod: LiveObject) -> Problem | None:
    """The first waiting container's problem, init containers first; None while they may all still start."""
    for status in statuses(pod, init=True) + statuses(pod):
        if problem := waiting_problem(pod, status):
            return problem
    return None


def start_problem(pod: LiveObject) -> Problem | None:
    """Why the pod will not start as it is; None while it still may."""
    if problem := unschedulable(pod) or container_problem(pod):
        return problem
    status = pod.get("status") or {}
    if status.get("phase") == "Failed" and not any(terminated(pod, s["name"]) for s in statuses(pod)):
        return Problem(f"it was stopped ({status.get('reason') or 'Failed'}: {status.get('message') or 'no message'})")
    return None


def failed_init(pod: LiveObject) -> tuple[str, int] | None:
    """(container, exit code) of an init container that exited non-zero."""
    for status in statuses(pod, init=True):
        ended = terminated(pod, status["name"])
        if ended and ended.get("exitCode", 0) != 0:
            return status["name"], ended["exitCode"]
    return None


def is_ready(pod: LiveObject) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def restarts(pod: LiveObject) -> int:
    return sum(s.get("restartCount", 0) for s in statuses(pod))
