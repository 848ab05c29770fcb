"""What to delete after applying a release: Teresa's live objects the new desired state no longer has.

A process type removed from the Procfile leaves its Deployment or CronJob
behind, `autoscale:unset` its HorizontalPodAutoscaler, and every release its
config Secret; the runtime lists each kind below and deletes what `stale` names.
"""

from __future__ import annotations

from controller.runtime.kubernetes.meta import APP_LABEL, MANAGED_BY, RELEASE_LABEL
from controller.runtime.kubernetes.objects import LiveObject, Manifest

# (apiVersion, kind) Teresa prunes; the namespace, its service account, limits
# and storage Secret live as long as the app, and one-off pods are deleted by whoever ran them.
PRUNABLE_KINDS = (
    ("apps/v1", "Deployment"),
    ("batch/v1", "CronJob"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("v1", "Service"),
    ("networking.k8s.io/v1", "Ingress"),
    ("policy/v1", "PodDisruptionBudget"),  # web scaled down to one replica
    ("v1", "Secret"),
)


def _release(obj: Manifest | LiveObject) -> int | None:
    label = obj["metadata"].get("labels", {}).get(RELEASE_LABEL, "")
    return int(label[1:]) if label.startswith("v") and label[1:].isdigit() else None


def stale(desired: list[Manifest], api_version: str, kind: str, live: list[LiveObject],
          keep_releases: int) -> list[str]:
    """Names of `live` objects of one kind (as a list call returns them) that Teresa made and no longer wants.

    Config Secrets of the `keep_releases` newest releases are kept, so pods of a
    previous ReplicaSet can still start while a rollout is undone.
    """
    if (api_version, kind) not in PRUNABLE_KINDS:
        return []
    wanted = {o["metadata"]["name"] for o in desired if (o["apiVersion"], o["kind"]) == (api_version, kind)}
    apps = {o["metadata"]["labels"][APP_LABEL] for o in desired}
    versions = [version for o in desired if o["kind"] == "Secret" and (version := _release(o)) is not None]
    oldest_kept = max(versions, default=0) - keep_releases + 1
    names = []
    for obj in live:
        meta = obj["metadata"]
        labels = meta.get("labels", {})
        if labels.get(MANAGED_BY) != "teresa" or labels.get(APP_LABEL) not in apps or meta["name"] in wanted:
            continue
        if kind == "Secret":
            version = _release(obj)
            if version is None or version >= oldest_kept:
                continue  # not a config Secret (storage, a running build), or still needed
        names.append(meta["name"])
    return sorted(names)
