"""Names, labels and metadata shared by every object Teresa renders."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping

from controller.runtime.kubernetes.objects import ObjectMeta, Secret
from core import process_types

MANAGED_BY = "app.kubernetes.io/managed-by"
APP_LABEL = "teresa.io/app"
PROCESS_TYPE_LABEL = "teresa.io/process-type"
RELEASE_LABEL = "teresa.io/release"
BUILD_LABEL = "teresa.io/build"
RUN_LABEL = "teresa.io/run"
GRANT_LABEL = "teresa.io/grant"     # on Secrets holding a presigned URL: what it grants ("slug")
OWNER_LABEL = "teresa.io/owner"     # on one-off pods and build Secrets: the server replica that deletes them
CHANGE_CAUSE = "kubernetes.io/change-cause"
SLUG_ANNOTATION = "teresa.io/slug"   # on pod templates: the slug's storage key (the URL itself is in a Secret)

NETWORK_POLICY = "teresa-isolation"
RESOURCE_QUOTA = "teresa-quota"
METADATA_ADDRESS = "169.254.169.254/32"   # the cloud's instance metadata (and its credentials)
SERVICE_ACCOUNT = "teresa-app"
LIMIT_RANGE = "teresa-defaults"
WEB = "web"

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# A CronJob's name must leave room for the 11 characters its Jobs append.


class ManifestError(ValueError):
    """The release cannot be rendered as Kubernetes objects; the message says what to change."""


def labels(app: str, process_type: str | None = None, release: int | None = None, *,
           extra: Mapping[str, str] | None = None) -> dict[str, str]:
    result = {MANAGED_BY: "teresa", APP_LABEL: app}
    if process_type is not None:
        result[PROCESS_TYPE_LABEL] = process_type
    if release is not None:
        result[RELEASE_LABEL] = f"v{release}"
    result.update(extra or {})
    return result


def label_value(text: str) -> str:
    """`text` as a label value: at most 63 of [A-Za-z0-9_.-], starting and ending alphanumeric."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63].strip("-_.")


def selector(app: str, process_type: str) -> dict[str, str]:
    """The labels a process type's pods are selected by; never includes the release (selectors are immutable)."""
    return {APP_LABEL: app, PROCESS_TYPE_LABEL: process_type}


def metadata(name: str, namespace: str | None, object_labels: dict[str, str], **annotations: str) -> ObjectMeta:
    meta: ObjectMeta = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = object_labels
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def object_name(process_type: str) -> str:
    """The Kubernetes name for a Procfile process type (core.process_types grammar, `_` spelt `-`)."""
    if not process_types.PROCESS_TYPE.match(process_type):
        raise ManifestError(f"Process type {process_type[:40]!r} cannot name a Kubernetes object; rename it in the "
                            f"Procfile: {process_types.PROCESS_TYPE_RULE}.")
    return process_types.kubernetes_name(process_type)


def config_secret_name(config: Mapping[str, str]) -> str:
    """Named by content: a release that keeps the config (scale, domains) keeps the pod template, so no pods restart.

    A rollback or undo re-applies the Secret of the config it ran with.
    """
    digest = hashlib.sha256(json.dumps(dict(config), sort_keys=True).encode()).hexdigest()
    return f"config-{digest[:12]}"


def secret(name: str, namespace: str, object_labels: dict[str, str], values: Mapping[str, str]) -> Secret:
    """An Opaque Secret with base64 `data`, the form the API server returns it in."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(name, namespace, object_labels),
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in sorted(values.items())},
    }
