"""Every object Teresa applies to a cluster, rendered as plain dicts from settings and a release.

Pure functions: nothing here talks to the API. `render_release` gives the app's
whole desired state in apply order; `to_yaml` prints it for `teresa manifests
APP` with Secret values masked.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import yaml

from controller import teresa_yaml
from controller.runtime.kubernetes.meta import (
    CHANGE_CAUSE,
    LIMIT_RANGE,
    MANAGED_BY,
    METADATA_ADDRESS,
    NETWORK_POLICY,
    RESOURCE_QUOTA,
    SLUG_ANNOTATION,
    SERVICE_ACCOUNT,
    WEB,
    ManifestError,
    config_secret_name,
    labels,
    metadata,
    object_name,
    secret,
    selector,
)
from controller.runtime.kubernetes.objects import (
    Container,
    CronJob,
    Deployment,
    HorizontalPodAutoscaler,
    Ingress,
    IngressBackend,
    IngressSpec,
    LimitRange,
    Manifest,
    Namespace,
    NetworkPolicy,
    PodDisruptionBudget,
    PodTemplate,
    Probe,
    ResourceQuota,
    Secret,
    Service,
    ServiceAccount,
)
from controller.runtime.kubernetes.pods import (
    CONTAINER_PORT,
    PORT_NAME,
    build_secret,
    release_pod,
    run_pod,
    slug_container,
    slug_pod_spec,
    slug_secret,
    slugbuilder_pod,
    start_command,
)
from controller.spec import Autoscale, ReleaseSpec
from core.config import Settings

__all__ = [
    "ManifestError", "app_objects", "autoscaler", "build_secret", "config_secret", "cron_job",
    "deployment", "disruption_budget", "ingress", "limit_range", "mask_secrets", "namespace", "network_policy", "release_pod",
    "render_release", "resource_quota", "run_pod", "service", "service_account", "slug_secret", "slugbuilder_pod",
    "to_yaml",
]

MASK = "********"
# After the preStop drain, the app still gets the usual 30 s to exit on SIGTERM.
SHUTDOWN_MARGIN_SECONDS = 30
# A new replica counts as available only after staying ready this long: one that exits right after it
# became ready is seen (as a restart) while the rollout still waits, and fails it.
MIN_READY_SECONDS = 5


def default_readiness() -> Probe:
    """A web process's readiness when teresa.yaml names none: a TCP connection to $PORT is accepted.

    Issue 11 asks for "any HTTP response counts"; a Kubernetes httpGet probe passes on 200-399 only (a 404
    or 500 from `/` would hold the rollout forever), and an exec probe would need an HTTP client in every
    image. A tcpSocket probe is the honest default: the app listens on $PORT or it is not ready.
    """
    return {"tcpSocket": {"port": PORT_NAME}, "periodSeconds": 2, "timeoutSeconds": 2, "failureThreshold": 3}


def namespace(settings: Settings, app: str) -> Namespace:
    ns_labels = labels(app)
    if not settings.kubernetes.allow_priv_containers:
        # Enforced on pods; `warn` also reports a Deployment or CronJob whose pod template would be refused.
        ns_labels.update({f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn")})
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata(app, None, ns_labels)}


def service_account(app: str) -> ServiceAccount:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(SERVICE_ACCOUNT, app, labels(app)),
        "automountServiceAccountToken": False,
    }


def limit_range(settings: Settings, app: str) -> LimitRange:
    k8s = settings.kubernetes
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": metadata(LIMIT_RANGE, app, labels(app)),
        "spec": {"limits": [{
            "type": "Container",
            "default": {"cpu": k8s.default_limit_cpu, "memory": k8s.default_limit_memory},
            "defaultRequest": {"cpu": k8s.default_request_cpu, "memory": k8s.default_request_memory},
        }]},
    }


def resource_quota(settings: Settings, app: str) -> ResourceQuota:
    """What the app's namespace may hold at once, from the operator's TERESA_APP_QUOTA_* settings."""
    k8s = settings.kubernetes
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": metadata(RESOURCE_QUOTA, app, labels(app)),
        "spec": {"hard": {"limits.cpu": k8s.quota_cpu, "limits.memory": k8s.quota_memory, "pods": k8s.quota_pods}},
    }


NAMESPACE_NAME = "kubernetes.io/metadata.name"


def _ip_blocks(settings: Settings, skip: list[str]) -> list[dict[str, object]]:
    """Peers for "any address" (IPv4 and IPv6) except `skip` and the cluster's own ranges."""
    skipped = [*skip, *settings.kubernetes.cluster_cidrs]
    blocks: list[dict[str, object]] = []
    for everything in ("0.0.0.0/0", "::/0"):
        except_ = [c for c in skipped if (":" in c) == (":" in everything)]
        blocks.append({"ipBlock": {"cidr": everything, **({"except": except_} if except_ else {})}})
    return blocks


def network_policy(settings: Settings, app: str) -> NetworkPolicy:
    """No ingress from other apps' namespaces; no egress to Teresa's namespace or to the cloud metadata address.

    Pods in the namespace reach each other; namespaces Teresa did not create (an ingress
    controller, monitoring) reach the app; the app reaches every namespace but Teresa's
    (DNS included) and the outside world. Where the network plugin applies ipBlocks to pod
    addresses, TERESA_CLUSTER_CIDRS keeps them from reopening what the selectors close."""
    not_teresa_apps = {"namespaceSelector": {"matchExpressions": [
        {"key": MANAGED_BY, "operator": "NotIn", "values": ["teresa"]}]}}
    not_teresa = {"namespaceSelector": {"matchExpressions": [
        {"key": NAMESPACE_NAME, "operator": "NotIn", "values": [settings.kubernetes.namespace]}]}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(NETWORK_POLICY, app, labels(app)),
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {}}, not_teresa_apps, *_ip_blocks(settings, [])]}],
            "egress": [{"to": [not_teresa, *_ip_blocks(settings, [METADATA_ADDRESS])]}],
        },
    }


def config_secret(release: ReleaseSpec) -> Secret:
    return secret(config_secret_name(release.config), release.app,
                  labels(release.app, release=release.version), release.config)


def app_objects(settings: Settings, app: str) -> list[Manifest]:
    """What `apps:create` applies: the namespace and what every later pod in it relies on."""
    return [namespace(settings, app), service_account(app), limit_range(settings, app), resource_quota(settings, app),
            network_policy(settings, app)]


def _probe(probe: teresa_yaml.Probe) -> Probe:
    return {
        "httpGet": {"path": probe.path, "port": PORT_NAME},
        "initialDelaySeconds": probe.initial_delay_seconds,
        "timeoutSeconds": probe.timeout_seconds,
        "periodSeconds": probe.period_seconds,
        "successThreshold": probe.success_threshold,
        "failureThreshold": probe.failure_threshold,
    }


def _process_container(settings: Settings, release: ReleaseSpec, process_type: str, drain: int) -> Container:
    container = slug_container(settings, release, object_name(process_type), start_command(process_type),
                               release.limits.get(process_type))
    if drain:
        container["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(drain)]}}}
    if process_type == WEB:
        container["ports"] = [{"name": PORT_NAME, "containerPort": CONTAINER_PORT, "protocol": "TCP"}]
        if release.spec.liveness:
            container["livenessProbe"] = _probe(release.spec.liveness)
        if release.spec.readiness:
            container["readinessProbe"] = _probe(release.spec.readiness)
        else:
            container["readinessProbe"] = default_readiness()
    return container


def _template(settings: Settings, release: ReleaseSpec, process_type: str, restart_policy: str) -> PodTemplate:
    # Draining (a preStop sleep while endpoints drop the pod) matters to long-running processes, not cron runs.
    drain = release.spec.drain_timeout_seconds if restart_policy == "Always" else 0
    container = _process_container(settings, release, process_type, drain)
    spec = slug_pod_spec(settings, release, container, restart_policy)
    spec["terminationGracePeriodSeconds"] = drain + SHUTDOWN_MARGIN_SECONDS
    # The slug's key, not only the Secret holding its URL: a new slug is a new template (templates.py).
    return {"metadata": {"labels": labels(release.app, process_type, release.version),
                         "annotations": {SLUG_ANNOTATION: release.slug_key}}, "spec": spec}


def deployment(settings: Settings, release: ReleaseSpec, process_type: str,
               autoscale: Autoscale | None = None) -> Deployment:
    replicas = release.replicas(process_type)
    if autoscale and autoscale.process_type == process_type:
        replicas = autoscale.clamp(replicas)
    update = release.spec.rolling_update
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(
            object_name(process_type), release.app, labels(release.app, process_type, release.version),
            **{CHANGE_CAUSE: f"{release.label}: {release.reason}"},
        ),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": settings.revision_history_limit,
            "progressDeadlineSeconds": settings.rollout_timeout,
            "minReadySeconds": MIN_READY_SECONDS,
            "selector": {"matchLabels": selector(release.app, process_type)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": update.max_surge, "maxUnavailable": update.max_unavailable},
            },
            "template": _template(settings, release, process_type, "Always"),
        },
    }


def service(app: str) -> Service:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(WEB, app, labels(app, WEB)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(app, WEB),
            "ports": [{"name": PORT_NAME, "port": 80, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def web_replicas(release: ReleaseSpec, autoscale: Autoscale | None) -> int:
    """The fewest web replicas the release runs with (an autoscaler's minimum when it scales web)."""
    if autoscale and autoscale.process_type == WEB:
        return autoscale.clamp(release.replicas(WEB))
    return release.replicas(WEB)


def disruption_budget(app: str) -> PodDisruptionBudget:
    """Voluntary disruptions (a node drained for an upgrade) take one web replica at a time, never all of them.

    Only rendered for more than one replica: with one, the budget would block every drain for good.
    """
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(WEB, app, labels(app, WEB)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(app, WEB)}},
    }


def hosts(settings: Settings, release: ReleaseSpec) -> list[str]:
    return list(dict.fromkeys([f"{release.app}.{settings.domain}", *release.domains]))


CLUSTER_ISSUER = "cert-manager.io/cluster-issuer"


def ingress(settings: Settings, release: ReleaseSpec) -> Ingress:
    """The app's hosts to its web Service; with TLS from the app's Secret (`domains:tls APP --secret NAME`),
    else, with TERESA_INGRESS_CLUSTER_ISSUER, from a certificate cert-manager issues into `<app>-tls`."""
    backend: IngressBackend = {"service": {"name": WEB, "port": {"number": 80}}}
    spec: IngressSpec = {}
    if settings.kubernetes.ingress_class:
        spec["ingressClassName"] = settings.kubernetes.ingress_class
    names = hosts(settings, release)
    issuer = settings.kubernetes.cluster_issuer if not release.tls_secret else ""
    if secret_name := release.tls_secret or (f"{release.app}-tls" if issuer else ""):
        spec["tls"] = [{"hosts": names, "secretName": secret_name}]
    spec["rules"] = [
        {"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
        for host in names
    ]
    annotations = {CLUSTER_ISSUER: issuer} if issuer else {}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(WEB, release.app, labels(release.app, WEB), **annotations),
        "spec": spec,
    }


def cron_job(settings: Settings, release: ReleaseSpec, process_type: str) -> CronJob:
    schedule = release.spec.schedule_for(process_type)
    if not schedule:
        raise ManifestError(
            f"Process type {process_type!r} runs on a schedule but teresa.yaml gives none; "
            f"add cron.schedule or cron.{process_type}.schedule to teresa.yaml."
        )
    template = _template(settings, release, process_type, "Never")
    object_labels = labels(release.app, process_type, release.version)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(object_name(process_type), release.app, object_labels,
                             **{CHANGE_CAUSE: f"{release.label}: {release.reason}"}),
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            # ps:scale cronX=0 pauses the schedule; cron types run unless scaled to 0 explicitly.
            "suspend": release.formation.get(process_type, 1) == 0,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": object_labels},
                "spec": {"backoffLimit": 0, "template": template},
            },
        },
    }


def autoscaler(release: ReleaseSpec, autoscale: Autoscale) -> HorizontalPodAutoscaler:
    process_type = autoscale.process_type
    if process_type not in release.long_running_types:
        raise ManifestError(
            f"{release.app} has no long-running process type {process_type!r} to autoscale; "
            f"pick one of: {', '.join(release.long_running_types) or 'none (add one to the Procfile)'}."
        )
    name = object_name(process_type)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(name, release.app, labels(release.app, process_type)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": autoscale.min_replicas,
            "maxReplicas": autoscale.max_replicas,
            "metrics": [{
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": autoscale.cpu_percent}},
            }],
        },
    }


def _check_unique_names(types: Iterable[str]) -> None:
    seen: dict[str, str] = {}
    for process_type in types:
        name = object_name(process_type)
        if name in seen:
            raise ManifestError(
                f"Process types {seen[name]!r} and {process_type!r} both become the Kubernetes name {name!r}; "
                "rename one of them in the Procfile."
            )
        seen[name] = process_type


def render_release(settings: Settings, release: ReleaseSpec, autoscale: Autoscale | None = None,
                   slug_url: str = "") -> list[Manifest]:
    """The app's whole desired state for `release`, in apply order; `slug_url` is a presigned GET of its slug.

    One-off pods (slugbuilder, release phase, run) are not part of it.
    """
    types = release.long_running_types
    crons = release.cron_types
    _check_unique_names([*types, *crons])
    objects = [*app_objects(settings, release.app), config_secret(release), slug_secret(release, slug_url)]
    objects += [deployment(settings, release, t, autoscale) for t in types]
    if WEB in types:
        objects += [service(release.app), ingress(settings, release)]
        if web_replicas(release, autoscale) > 1:
            objects.append(disruption_budget(release.app))
    objects += [cron_job(settings, release, t) for t in crons]
    if autoscale:
        objects.append(autoscaler(release, autoscale))
    return objects


def mask_secrets(obj: Manifest) -> Manifest:
    """A copy of `obj` with every Secret value replaced by a mask; other objects are returned as they are."""
    if obj["kind"] != "Secret":
        return obj
    masked = copy.deepcopy(obj)
    if "data" in masked:
        masked["data"] = {key: MASK for key in masked["data"]}
    if "stringData" in masked:
        masked["stringData"] = {key: MASK for key in masked["stringData"]}
    return masked


def to_yaml(objects: Iterable[Manifest], mask: bool = True) -> str:
    shown = [mask_secrets(o) if mask else o for o in objects]
    return yaml.safe_dump_all(shown, sort_keys=False, default_flow_style=False)
