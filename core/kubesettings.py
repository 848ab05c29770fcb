"""The Kubernetes runtime's settings: how Teresa reaches the cluster and what it renders into app namespaces."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from core.envparse import ConfigError, boolean, comma_list, integer, positive, seconds, text
from core.quantity import parse_quantity
from core.setting import read, setting


def quantity(name: str, value: str, default: str) -> str:
    try:
        parse_quantity(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a Kubernetes quantity; use a value like {default}.") from None
    return value


PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def pull_policy(name: str, value: str, default: str) -> str:
    if value not in PULL_POLICIES:
        raise ConfigError(f"{name}={value!r} is not a pull policy; use one of {', '.join(PULL_POLICIES)}.")
    return value


DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def secret_names(name: str, value: str, default: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.replace(",", " ").split())
    for bad in (n for n in names if not DNS_NAME.match(n)):
        raise ConfigError(f"{name} has {bad[:64]!r}, which is not a Secret name; list names like regcred, other.")
    return names


def non_root_uid(name: str, value: str, default: int) -> int:
    uid = integer(name, value, default)
    if uid <= 0:
        raise ConfigError(f"{name}={uid} must be a non-root user id; use a number like {default}.")
    return uid


def poll_seconds(name: str, value: str, default: float) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0
    if not 0 < number <= 60:
        raise ConfigError(f"{name}={value!r} is not a number of seconds; set it like 0.5.")
    return number


def _quantity(env: str, default: str, *, help: str = "", joins: bool = False) -> str:
    return setting(env, quantity, default=default, help=help, joins=joins)


@dataclass(frozen=True)
class KubernetesSettings:
    """How Teresa reaches the cluster and what it puts into the objects it renders there."""

    host: str = setting("TERESAK8S_HOST", text, default="", shown="", help="the cluster")
    username: str = setting("TERESAK8S_USERNAME", text, default="", joins=True, as_given=True)
    password: str = setting("TERESAK8S_PASSWORD", text, default="", joins=True, as_given=True, repr=False)
    insecure: bool = setting("TERESAK8S_INSECURE", boolean, default=False, joins=True)
    config_file: str = setting("TERESAK8S_CONFIG_FILE", text, default="", joins=True)
    namespace: str = setting(
        "TERESA_NAMESPACE", text, default="teresa",
        help="Kubernetes: Teresa's own namespace, which app pods may not reach")
    cluster_cidrs: tuple[str, ...] = setting(
        "TERESA_CLUSTER_CIDRS", comma_list, default=(),
        help="Kubernetes: pod and service ranges (comma-separated) left out of the NetworkPolicy's \"any address\" "
             "rules, for network plugins that apply `ipBlock` to pod addresses")
    quota_cpu: str = _quantity(
        "TERESA_APP_QUOTA_CPU", "4",
        help="Kubernetes: each app namespace's ResourceQuota (`limits.cpu`, `limits.memory`, `pods`)")
    quota_memory: str = _quantity("TERESA_APP_QUOTA_MEMORY", "8Gi", joins=True)
    quota_pods: str = _quantity("TERESA_APP_QUOTA_PODS", "20", joins=True)
    max_limit_cpu: str = _quantity("TERESA_MAX_LIMIT_CPU", "2", help="the most `limits:set` accepts")
    max_limit_memory: str = _quantity("TERESA_MAX_LIMIT_MEMORY", "4Gi", joins=True)
    max_replicas: int = setting("TERESA_MAX_REPLICAS", positive, default=10,
                                help="the most `autoscale:set --max` accepts")
    default_limit_cpu: str = _quantity(
        "TERESA_DEFAULT_LIMIT_CPU", "500m",
        help="Kubernetes: each app namespace's LimitRange: the limits of a container that sets none")
    default_limit_memory: str = _quantity("TERESA_DEFAULT_LIMIT_MEMORY", "512Mi", joins=True)
    default_request_cpu: str = _quantity(
        "TERESA_DEFAULT_REQUEST_CPU", "100m",
        help="Kubernetes: each app namespace's LimitRange: the requests of a container that sets none")
    default_request_memory: str = _quantity("TERESA_DEFAULT_REQUEST_MEMORY", "128Mi", joins=True)
    build_limit_cpu: str = _quantity("TERESA_BUILD_LIMIT_CPU", "1", help="Kubernetes: build pods' limits")
    build_limit_memory: str = _quantity("TERESA_BUILD_LIMIT_MEMORY", "1Gi", joins=True)
    slugbuilder_image: str = setting(
        "TERESA_SLUGBUILDER_IMAGE", text, default="", shown="none: required on Kubernetes",
        help="the stack image (a pinned tag or digest) slugs are built in; the server refuses to start on "
             "Kubernetes without it")
    slugrunner_image: str = setting(
        "TERESA_SLUGRUNNER_IMAGE", text, default="", shown="`TERESA_SLUGBUILDER_IMAGE`",
        help="the image app processes (and release-phase and `run` pods) run in")
    image_pull_policy: str = setting(  # "": Kubernetes' own default (Always for :latest, else IfNotPresent)
        "TERESA_IMAGE_PULL_POLICY", pull_policy, default="", shown="Kubernetes' default",
        help="`Always`, `IfNotPresent` or `Never`, on every container Teresa creates")
    image_pull_secrets: tuple[str, ...] = setting(
        "TERESA_IMAGE_PULL_SECRETS", secret_names, default=(),
        help="comma-separated names of Secrets in `TERESA_NAMESPACE`, copied into each app namespace and named "
             "in every pod's `imagePullSecrets`")
    allow_priv_containers: bool = setting(
        "TERESA_ALLOW_PRIV_CONTAINERS", boolean, default=False,
        help="Kubernetes: `true` leaves out the pods' security context (a non-root uid, no privilege escalation, "
             "no capabilities, the runtime's seccomp profile) and app namespaces' PodSecurity `restricted`")
    run_as_user: int = setting("TERESA_RUN_AS_USER", non_root_uid, default=1000,
                               help="Kubernetes: the uid (and gid) pods run as; never 0")
    start_grace: float = setting(
        "TERESA_POD_START_GRACE", seconds, default=180.0,
        help="seconds a pod may stay `Unschedulable` or fail to pull its image (normal while a cluster autoscaler "
             "adds a node) before the push or command fails; other start failures and crashes fail at once")
    run_timeout: int = setting(
        "TERESA_RUN_TIMEOUT", positive, default=60 * 60,
        help="Kubernetes: `activeDeadlineSeconds` of `run` pods (release-phase pods get `TERESA_BUILD_TIMEOUT` + 60)")
    ingress_class: str = setting("TERESA_INGRESS_CLASS", text, default="", shown="the cluster's default",
                                 help="Kubernetes: `ingressClassName` of every app's Ingress")
    cluster_issuer: str = setting(
        "TERESA_INGRESS_CLUSTER_ISSUER", text, default="",
        help="a cert-manager ClusterIssuer: every app's Ingress asks it for a certificate for the app's hosts "
             "(Secret `<app>-tls`), unless the app has its own (`domains:tls APP --secret NAME`)")
    slug_url_refresh: int = setting(
        "TERESA_SLUG_URL_REFRESH_INTERVAL", positive, default=24 * 60 * 60,
        help="seconds between renewals of the slug URLs (presigned, 7 days at most) in app namespaces, by one "
             "replica at a time; also renewed at start")
    poll_interval: float = setting(
        "TERESAK8S_POLL_INTERVAL", poll_seconds, default=1.0,
        help="Kubernetes: seconds between reads of pod and Deployment status (at most 60)")


def kubernetes_from_env(env: Mapping[str, str]) -> KubernetesSettings:
    return read(KubernetesSettings, env, derived={"slugrunner_image": lambda k8s: k8s.slugbuilder_image})


def require_cluster_ready(settings: KubernetesSettings, storage_type: str) -> None:
    """What the Kubernetes runtime cannot run without; checked when the server starts, one sentence each."""
    if not settings.slugbuilder_image:
        raise ConfigError("TERESA_SLUGBUILDER_IMAGE is not set; set it to the stack image pushed to your registry "
                          "(a pinned tag or digest, like registry.example.com/teresa-stack:0.1.0).")
    if storage_type != "s3":
        raise ConfigError("TERESAFILESTORAGE_TYPE=local cannot serve pods on Kubernetes; set "
                          "TERESAFILESTORAGE_TYPE=s3 and the TERESAFILESTORAGE_AWS_* settings.")
