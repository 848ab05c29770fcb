"""Housekeeping in app namespaces that no push asks for: what a crashed server left behind, slug URLs that
would expire, the registry credentials pods pull with.

- One-off pods (builds, release phases, `run`) and build Secrets carry the label of the server replica that
  created them (OWNER_LABEL); that replica deletes them when they end. One whose replica is gone is an orphan:
  the replica is this one (the process it replaces crashed), or, when replicas are pods in Teresa's namespace
  (deploy/: TERESA_REPLICA_NAME is the pod's name), no pod of that name exists any more.
- Slug Secrets hold a presigned GET of one slug (at most 7 days on S3); a pod started later (a restart, a
  scale-up, a node drained) reads the Secret then, so the URLs are renewed well before they expire. Renewing
  a Secret changes no pod template: no pod restarts.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable

from builder.slugrunner import SLUG_URL
from controller.runtime.kubernetes.client import ALL_NAMESPACES, KubeClient
from controller.runtime.kubernetes.meta import (
    GRANT_LABEL, MANAGED_BY, OWNER_LABEL, SLUG_ANNOTATION, label_value, labels, metadata,
)
from controller.runtime.kubernetes.objects import Secret
from core import log
from core.config import Settings
from core.storage import Storage

logger = log.get("runtime.kubernetes")
TEAM = {MANAGED_BY: "teresa"}


async def remove_orphans(kube: KubeClient, settings: Settings) -> int:
    """Delete the one-off pods and build Secrets whose replica is gone; returns how many."""
    gone = await _gone_owners(kube, settings)
    removed = 0
    for kind in ("Pod", "Secret"):
        for obj in await kube.list("v1", kind, ALL_NAMESPACES, TEAM, has=(OWNER_LABEL,)):
            meta = obj["metadata"]
            if gone(meta["labels"][OWNER_LABEL]):
                removed += await kube.delete("v1", kind, meta["name"], meta["namespace"])
                logger.warning("orphan removed", kind=kind, name=meta["name"], app=meta["namespace"],
                               owner=meta["labels"][OWNER_LABEL])
    return removed


async def _gone_owners(kube: KubeClient, settings: Settings) -> Callable[[str], bool]:
    me = label_value(settings.replica_name)
    namespace = settings.kubernetes.namespace
    replicas_are_pods = await kube.get("v1", "Pod", settings.replica_name, namespace) is not None
    live = {p["metadata"]["name"] for p in await kube.list("v1", "Pod", namespace)} if replicas_are_pods else set()

    def gone(owner: str) -> bool:
        return owner == me or (replicas_are_pods and owner not in {label_value(name) for name in live})
    return gone


async def refresh_slug_urls(kube: KubeClient, storage: Storage, seconds: int) -> int:
    """Sign each slug Secret's slug anew (valid `seconds`); returns how many Secrets were renewed."""
    renewed = 0
    # Selected by label: config Secrets (the apps' config vars) are not even read.
    for secret in await kube.list("v1", "Secret", ALL_NAMESPACES, {**TEAM, GRANT_LABEL: "slug"}):
        meta = secret["metadata"]
        key = (meta.get("annotations") or {}).get(SLUG_ANNOTATION)
        if not key or SLUG_URL not in (secret.get("data") or {}):
            continue
        url = await asyncio.to_thread(storage.grant, key, write=False, seconds=seconds)
        value = base64.b64encode(url.encode()).decode()
        await kube.patch("v1", "Secret", meta["name"], meta["namespace"], {"data": {SLUG_URL: value}})
        renewed += 1
    return renewed


async def pull_secret_copies(kube: KubeClient, settings: Settings, app: str) -> list[Secret]:
    """TERESA_IMAGE_PULL_SECRETS as read from Teresa's namespace, as copies for the app's namespace (a pod can
    only name Secrets of its own namespace)."""
    copies: list[Secret] = []
    for name in settings.kubernetes.image_pull_secrets:
        live = await kube.get("v1", "Secret", name, settings.kubernetes.namespace)
        if live is None:
            raise PullSecretMissing(f"TERESA_IMAGE_PULL_SECRETS names {name}, which is not a Secret in the "
                                    f"{settings.kubernetes.namespace} namespace; create it there or remove it "
                                    "from the setting.")
        copies.append({"apiVersion": "v1", "kind": "Secret", "metadata": metadata(name, app, labels(app)),
                       "type": live.get("type") or "Opaque", "data": live.get("data") or {}})
    return copies


class PullSecretMissing(Exception):
    """An image pull Secret the settings name does not exist; the message says which and what to do."""
