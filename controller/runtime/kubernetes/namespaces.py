"""An app's namespace: whose it is, and waiting out the deletion `apps:destroy` started.

A namespace is deleted asynchronously: its pods stop within their grace period,
then the namespace controller removes what is left. Until then nothing can be
created in it, so `apps:create` of a name just destroyed waits for it to go.
"""

from __future__ import annotations

import asyncio
import time

from controller.runtime.base import RuntimeFailure
from controller.runtime.kubernetes.client import KubeClient
from controller.runtime.kubernetes.meta import APP_LABEL, MANAGED_BY
from controller.runtime.kubernetes.objects import LiveObject

# Pods get 30 seconds by default to stop, and the namespace controller then needs a few more.
NAMESPACE_GONE_SECONDS = 120.0


def is_apps(namespace: LiveObject, app: str) -> bool:
    """Labelled as Teresa's namespace of this app (as `manifests.namespace` labels it)."""
    labels = namespace["metadata"].get("labels") or {}
    return labels.get(MANAGED_BY) == "teresa" and labels.get(APP_LABEL) == app


async def wait_gone_if_terminating(kube: KubeClient, name: str, timeout: float,
                                   poll_interval: float) -> LiveObject | None:
    """The namespace as it is, once it is not being deleted (None: there is none)."""
    deadline = time.monotonic() + timeout
    while (live := await kube.get("v1", "Namespace", name)) is not None and live["metadata"].get("deletionTimestamp"):
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"The namespace {name} is still being deleted after {timeout:g} seconds; "
                                 "try again in a minute, and ask the operator if it stays.")
        await asyncio.sleep(poll_interval)
    return live
