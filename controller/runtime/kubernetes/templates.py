"""Keeping a Deployment's pod template when a release does not change what its pods run, and its
replica count when an autoscaler owns it.

Every release is rendered with its own version in the pod template's labels,
which would roll every pod on a scale-only or domains-only release. The
Deployment carries a hash of its template without that label (an annotation,
so the API server's defaulting does not matter); when the new release renders
the same hash, the live template's release label and restart stamp are kept,
and Kubernetes sees no template change.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json

from controller.runtime.kubernetes.meta import PROCESS_TYPE_LABEL, RELEASE_LABEL
from controller.runtime.kubernetes.objects import Deployment, DeploymentPatch, LiveObject, ObjectMeta, PodTemplate
from controller.spec import Autoscale

TEMPLATE_HASH = "teresa.io/template-hash"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def template_hash(template: PodTemplate) -> str:
    bare = copy.deepcopy(template)
    meta = bare.setdefault("metadata", {})
    meta.get("labels", {}).pop(RELEASE_LABEL, None)
    meta.get("annotations", {}).pop(RESTARTED_AT, None)
    return hashlib.sha256(json.dumps(bare, sort_keys=True).encode()).hexdigest()[:16]


def now_stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def keep_template(new: Deployment, live: LiveObject | None, restart: bool) -> Deployment:
    """`new` Deployment with its template hash annotated, the live template's identity kept when unchanged.

    `restart` stamps the template, which rolls the pods even when nothing else changed.
    """
    result = copy.deepcopy(new)
    template = result["spec"]["template"]
    digest = template_hash(template)
    result["metadata"].setdefault("annotations", {})[TEMPLATE_HASH] = digest
    live_meta = ((live or {}).get("metadata") or {})
    if live is not None and (live_meta.get("annotations") or {}).get(TEMPLATE_HASH) == digest:
        live_template = (live.get("spec") or {}).get("template", {}).get("metadata") or {}
        if release := (live_template.get("labels") or {}).get(RELEASE_LABEL):
            template["metadata"]["labels"][RELEASE_LABEL] = release
        if stamp := (live_template.get("annotations") or {}).get(RESTARTED_AT):
            template["metadata"].setdefault("annotations", {})[RESTARTED_AT] = stamp
    if restart:
        template["metadata"].setdefault("annotations", {})[RESTARTED_AT] = now_stamp()
    return result


def keep_autoscaled_replicas(new: Deployment, live: LiveObject | None, autoscale: Autoscale | None) -> Deployment:
    """Under a HorizontalPodAutoscaler the live replica count is the autoscaler's: a release keeps it
    (within the autoscaler's bounds) instead of resetting the Deployment to the formation's count."""
    process_type = new["spec"]["template"]["metadata"].get("labels", {}).get(PROCESS_TYPE_LABEL)
    live_replicas = ((live or {}).get("spec") or {}).get("replicas")
    if autoscale is None or autoscale.process_type != process_type or not isinstance(live_replicas, int):
        return new
    result = copy.deepcopy(new)
    result["spec"]["replicas"] = autoscale.clamp(live_replicas)
    return result


def restart_patch() -> DeploymentPatch:
    """A merge patch that rolls a Deployment's pods (what `kubectl rollout restart` does)."""
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now_stamp()}}}}}


def applicable(live: LiveObject) -> Deployment:
    """A live Deployment reduced to what one applies (for undoing to it): no status or server-set metadata."""
    meta = live["metadata"]
    kept: ObjectMeta = {"name": meta["name"]}
    if "namespace" in meta:
        kept["namespace"] = meta["namespace"]
    if "labels" in meta:
        kept["labels"] = meta["labels"]
    if "annotations" in meta:
        kept["annotations"] = meta["annotations"]
    return {"apiVersion": live.get("apiVersion", "apps/v1"), "kind": live.get("kind", "Deployment"),
            "metadata": kept, "spec": copy.deepcopy(live["spec"])}
