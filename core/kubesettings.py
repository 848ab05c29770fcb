"""The Kubernetes runtime's settings: how Teresa reaches the cluster and what it renders into app namespaces."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from core.envparse import ConfigError, _bool, _int, _positive, _seconds


def _quantity(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        return default
    from kubernetes.utils.quantity import parse_quantity  # heavy import: only when the setting is given

    try:
        parse_quantity(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a Kubernetes quantity; use a value like {default}.") from None
    return value


@dataclass(frozen=True)
class KubernetesSettings:
    """How Teresa reaches the cluster and what it puts into the objects it renders there."""

    host: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    insecure: bool = False
    config_file: str = ""
    slugbuilder_image: str = ""                     # no default: Teresa on Kubernetes refuses to start without one
    slugrunner_image: str = ""                      # default: the slugbuilder image
    image_pull_policy: str = ""                     # "": Kubernetes' own default (Always for :latest, else IfNotPresent)
    image_pull_secrets: tuple[str, ...] = ()        # Secrets in Teresa's namespace, copied into each app's
    build_limit_cpu: str = "1"
    build_limit_memory: str = "1Gi"
    default_limit_cpu: str = "500m"
    default_limit_memory: str = "512Mi"
    default_request_cpu: str = "100m"
    default_request_memory: str = "128Mi"
    allow_priv_containers: bool = False
    run_as_user: int = 1000
    ingress_class: str = ""
    namespace: str = "teresa"                       # where Teresa itself runs: app pods may not reach it
    cluster_cidrs: tuple[str, ...] = ()             # pod/service ranges that egress/ingress ipBlocks must skip
    quota_cpu: str = "4"                            # per-app ResourceQuota: limits.cpu
    quota_memory: str = "8Gi"                       # limits.memory
    quota_pods: str = "20"                          # pods
    max_limit_cpu: str = "2"                        # the most `limits:set --cpu` may ask for
    max_limit_memory: str = "4Gi"                   # the most `limits:set --memory` may ask for
    max_replicas: int = 10                          # the most `autoscale:set --max` may ask for
    start_grace: float = 180.0                      # seconds a pod may be Unschedulable or fail to pull its image
    run_timeout: int = 60 * 60                      # activeDeadlineSeconds of `run` pods
    cluster_issuer: str = ""                        # cert-manager ClusterIssuer named on every Ingress
    slug_url_refresh: int = 24 * 60 * 60            # seconds between renewals of the slug URLs in app namespaces


def kubernetes_from_env(env: Mapping[str, str]) -> KubernetesSettings:
    defaults = KubernetesSettings()
    run_as_user = _int(env, "TERESA_RUN_AS_USER", defaults.run_as_user)
    if run_as_user <= 0:
        raise ConfigError(f"TERESA_RUN_AS_USER={run_as_user} must be a non-root user id; use a number like 1000.")
    return KubernetesSettings(
        host=env.get("TERESAK8S_HOST", "").strip(),
        username=env.get("TERESAK8S_USERNAME", ""),
        password=env.get("TERESAK8S_PASSWORD", ""),
        insecure=_bool(env, "TERESAK8S_INSECURE"),
        config_file=env.get("TERESAK8S_CONFIG_FILE", "").strip(),
        slugbuilder_image=env.get("TERESA_SLUGBUILDER_IMAGE", "").strip(),
        slugrunner_image=(env.get("TERESA_SLUGRUNNER_IMAGE", "").strip()
                          or env.get("TERESA_SLUGBUILDER_IMAGE", "").strip()),
        image_pull_policy=_pull_policy(env),
        image_pull_secrets=_names(env, "TERESA_IMAGE_PULL_SECRETS"),
        build_limit_cpu=_quantity(env, "TERESA_BUILD_LIMIT_CPU", defaults.build_limit_cpu),
        build_limit_memory=_quantity(env, "TERESA_BUILD_LIMIT_MEMORY", defaults.build_limit_memory),
        default_limit_cpu=_quantity(env, "TERESA_DEFAULT_LIMIT_CPU", defaults.default_limit_cpu),
        default_limit_memory=_quantity(env, "TERESA_DEFAULT_LIMIT_MEMORY", defaults.default_limit_memory),
        default_request_cpu=_quantity(env, "TERESA_DEFAULT_REQUEST_CPU", defaults.default_request_cpu),
        default_request_memory=_quantity(env, "TERESA_DEFAULT_REQUEST_MEMORY", defaults.default_request_memory),
        allow_priv_containers=_bool(env, "TERESA_ALLOW_PRIV_CONTAINERS"),
        run_as_user=run_as_user,
        ingress_class=env.get("TERESA_INGRESS_CLASS", "").strip(),
        namespace=env.get("TERESA_NAMESPACE", "").strip() or defaults.namespace,
        cluster_cidrs=tuple(c.strip() for c in env.get("TERESA_CLUSTER_CIDRS", "").split(",") if c.strip()),
        quota_cpu=_quantity(env, "TERESA_APP_QUOTA_CPU", defaults.quota_cpu),
        quota_memory=_quantity(env, "TERESA_APP_QUOTA_MEMORY", defaults.quota_memory),
        quota_pods=_quantity(env, "TERESA_APP_QUOTA_PODS", defaults.quota_pods),
        max_limit_cpu=_quantity(env, "TERESA_MAX_LIMIT_CPU", defaults.max_limit_cpu),
        max_limit_memory=_quantity(env, "TERESA_MAX_LIMIT_MEMORY", defaults.max_limit_memory),
        max_replicas=_positive(env, "TERESA_MAX_REPLICAS", defaults.max_replicas),
        start_grace=_seconds(env, "TERESA_POD_START_GRACE", defaults.start_grace),
        run_timeout=_positive(env, "TERESA_RUN_TIMEOUT", defaults.run_timeout),
        cluster_issuer=env.get("TERESA_INGRESS_CLUSTER_ISSUER", "").strip(),
        slug_url_refresh=_positive(env, "TERESA_SLUG_URL_REFRESH_INTERVAL", defaults.slug_url_refresh),
    )


PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def _pull_policy(env: Mapping[str, str]) -> str:
    value = env.get("TERESA_IMAGE_PULL_POLICY", "").strip()
    if value and value not in PULL_POLICIES:
        raise ConfigError(f"TERESA_IMAGE_PULL_POLICY={value!r} is not a pull policy; use one of "
                          f"{', '.join(PULL_POLICIES)}.")
    return value


DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def _names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in env.get(name, "").replace(",", " ").split())
    for bad in (n for n in names if not DNS_NAME.match(n)):
        raise ConfigError(f"{name} has {bad[:64]!r}, which is not a Secret name; list names like regcred, other.")
    return names


def require_cluster_ready(settings: KubernetesSettings, storage_type: str) -> None:
    """What the Kubernetes runtime cannot run without; checked when the server starts, one sentence each."""
    if not settings.slugbuilder_image:
        raise ConfigError("TERESA_SLUGBUILDER_IMAGE is not set; set it to the stack image pushed to your registry "
                          "(a pinned tag or digest, like registry.example.com/teresa-stack:0.1.0).")
    if storage_type != "s3":
        raise ConfigError("TERESAFILESTORAGE_TYPE=local cannot serve pods on Kubernetes; set "
                          "TERESAFILESTORAGE_TYPE=s3 and the TERESAFILESTORAGE_AWS_* settings.")
