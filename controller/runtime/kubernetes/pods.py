"""Pod specs: security contexts, the slug init container, slugbuilder, release-phase and one-off pods."""

from __future__ import annotations

import re
import secrets

from builder import job
from builder.job import BuildRequest, Grants
from builder.slugrunner import SLUG_SHA256, SLUG_URL
from controller.runtime.kubernetes.meta import (
    BUILD_LABEL,
    GRANT_LABEL,
    OWNER_LABEL,
    RUN_LABEL,
    SERVICE_ACCOUNT,
    SLUG_ANNOTATION,
    ManifestError,
    config_secret_name,
    label_value,
    labels,
    metadata,
    secret,
)
from controller.runtime.kubernetes.objects import (
    Container,
    EnvVar,
    Pod,
    PodSecurityContext,
    PodSpec,
    ResourceRequirements,
    Secret,
    SecurityContext,
)
from controller.spec import ReleaseSpec
from core.config import KubernetesSettings, Settings

APP_DIR = "/app"
APP_VOLUME = "app"
CONTAINER_PORT = 5000
PORT_NAME = "http"
BUILD_CONFIG_KEY = job.CONFIG
BUILD_DEADLINE_MARGIN = 60


def pod_security(k8s: KubernetesSettings) -> PodSecurityContext:
    if k8s.allow_priv_containers:
        return {}
    return {
        "runAsNonRoot": True,
        "runAsUser": k8s.run_as_user,
        "runAsGroup": k8s.run_as_user,
        "fsGroup": k8s.run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security(k8s: KubernetesSettings) -> SecurityContext:
    if k8s.allow_priv_containers:
        return {}
    return {
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "runAsUser": k8s.run_as_user,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _secured(container: Container, k8s: KubernetesSettings) -> Container:
    """The container with the operator's security context and image pull policy."""
    if k8s.image_pull_policy:
        container["imagePullPolicy"] = k8s.image_pull_policy
    if context := container_security(k8s):
        container["securityContext"] = context
    return container


def _env(**values: str) -> list[EnvVar]:
    return [{"name": name, "value": value} for name, value in values.items()]


def base_pod_spec(k8s: KubernetesSettings, restart_policy: str) -> PodSpec:
    """What every Teresa pod has: the app's service account without a token, no service links."""
    spec: PodSpec = {
        "restartPolicy": restart_policy,
        "serviceAccountName": SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
    }
    if k8s.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in k8s.image_pull_secrets]
    if context := pod_security(k8s):
        spec["securityContext"] = context
    return spec


def resources(limits: dict[str, str] | None) -> ResourceRequirements:
    chosen = {k: str(v) for k, v in (limits or {}).items() if k in ("cpu", "memory")}
    return {"limits": chosen} if chosen else {}


def slug_secret_name(build_id: str) -> str:
    return f"slug-{_name_suffix(build_id)}"


def slug_secret(release: ReleaseSpec, slug_url: str) -> Secret:
    """The release's slug URL (a presigned GET of that one slug), renewed at each deploy and by upkeep.py, which
    finds the slug's key in its annotation; no storage credential."""
    made = secret(slug_secret_name(release.build_id), release.app,
                  labels(release.app, release=release.version, extra={GRANT_LABEL: "slug"}), {SLUG_URL: slug_url})
    made["metadata"]["annotations"] = {SLUG_ANNOTATION: release.slug_key}
    return made


def fetch_container(settings: Settings, release: ReleaseSpec) -> Container:
    """The init container: downloads the slug through its presigned URL, checks it against the digest its build
    left, and unpacks it into the shared emptyDir."""
    env = _env(TERESA_APP_DIR=APP_DIR, **({SLUG_SHA256: release.slug_digest} if release.slug_digest else {}))
    env.append({"name": SLUG_URL,
                "valueFrom": {"secretKeyRef": {"name": slug_secret_name(release.build_id), "key": SLUG_URL}}})
    return _secured({
        "name": "fetch-slug",
        "image": settings.kubernetes.slugrunner_image,
        "command": ["teresa-slugrunner", "fetch"],
        "env": env,
        "volumeMounts": [{"name": APP_VOLUME, "mountPath": APP_DIR}],
    }, settings.kubernetes)


def slug_container(settings: Settings, release: ReleaseSpec, name: str, command: list[str],
                   limits: dict[str, str] | None = None) -> Container:
    """A container running from the unpacked slug with the release's config vars (no storage credentials)."""
    container: Container = {
        "name": name,
        "image": settings.kubernetes.slugrunner_image,
        "command": command,
        "workingDir": APP_DIR,
        "envFrom": [{"secretRef": {"name": config_secret_name(release.config)}}],
        # env wins over envFrom, so a config var cannot redirect these.
        "env": _env(PORT=str(CONTAINER_PORT), TERESA_APP_DIR=APP_DIR, HOME=APP_DIR),
        "volumeMounts": [{"name": APP_VOLUME, "mountPath": APP_DIR}],
    }
    if limit := resources(limits):
        container["resources"] = limit
    return _secured(container, settings.kubernetes)


def slug_pod_spec(settings: Settings, release: ReleaseSpec, container: Container,
                  restart_policy: str) -> PodSpec:
    spec = base_pod_spec(settings.kubernetes, restart_policy)
    spec["initContainers"] = [fetch_container(settings, release)]
    spec["containers"] = [container]
    spec["volumes"] = [{"name": APP_VOLUME, "emptyDir": {}}]
    return spec


# The slug's process is not PID 1: `teresa-slugrunner init` is, and passes signals to the process group as
# Heroku signals every process of a dyno, then waits for all of it (builder/slug_init.py says why not tini).
INIT = ["teresa-slugrunner", "init", "--"]


def start_command(process_type: str) -> list[str]:
    return [*INIT, "teresa-slugrunner", "start", process_type]


def exec_command(argv: list[str]) -> list[str]:
    return [*INIT, "teresa-slugrunner", "exec", "--", *argv]


def release_pod(settings: Settings, release: ReleaseSpec) -> Pod:
    """The release phase: runs the Procfile's `release` command once; a non-zero exit aborts the release."""
    if "release" not in release.processes:
        raise ManifestError(f"{release.app} has no release process type in its Procfile; there is no release phase to run.")
    container = slug_container(settings, release, "release", start_command("release"), release.limits.get("release"))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(f"release-{release.label}", release.app,
                             labels(release.app, "release", release.version, extra=owner(settings))),
        "spec": _deadline(slug_pod_spec(settings, release, container, "Never"),
                          settings.build_timeout + BUILD_DEADLINE_MARGIN),
    }


def _deadline(spec: PodSpec, seconds: int) -> PodSpec:
    """A one-off pod stops after `seconds` even when nobody is left to stop it (the server crashed)."""
    spec["activeDeadlineSeconds"] = seconds
    return spec


def run_pod(settings: Settings, release: ReleaseSpec, argv: list[str], name: str | None = None, *,
            tty: bool = False) -> Pod:
    """A one-off process for `run APP -- CMD`; it carries no process-type label, so no Deployment adopts it.
    Its stdin is open for one attach (the client's stdin, then EOF), with a terminal when `tty`."""
    if not argv:
        raise ManifestError("run needs a command after --, like: run myapp -- bash.")
    name = name or f"run-{secrets.token_hex(4)}"
    container = slug_container(settings, release, "run", exec_command(argv), release.limits.get("run"))
    container["stdin"], container["stdinOnce"], container["tty"] = True, True, tty
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(name, release.app, labels(release.app, release=release.version,
                                                            extra={RUN_LABEL: name, **owner(settings)})),
        "spec": _deadline(slug_pod_spec(settings, release, container, "Never"), settings.kubernetes.run_timeout),
    }


def owner(settings: Settings) -> dict[str, str]:
    """The label naming the server replica that runs a one-off pod: it deletes the pod, or (crashed) its successor."""
    return {OWNER_LABEL: label_value(settings.replica_name)}


def _name_suffix(build_id: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", build_id.lower()).strip("-")[:50].rstrip("-")


def build_pod_name(build_id: str) -> str:
    return f"slugbuilder-{_name_suffix(build_id)}"


def build_secret(settings: Settings, request: BuildRequest) -> Secret:
    """The build's config vars for TERESA_BUILD_CONFIG, named like its pod; delete it with the pod."""
    return secret(build_pod_name(request.build_id), request.app, _build_labels(settings, request),
                  {BUILD_CONFIG_KEY: request.config_json()})


def _build_labels(settings: Settings, request: BuildRequest) -> dict[str, str]:
    return labels(request.app, extra={BUILD_LABEL: label_value(request.build_id), **owner(settings)})


def slugbuilder_pod(settings: Settings, request: BuildRequest, grants: Grants) -> Pod:
    """The build pod: `teresa-slugbuilder` configured by environment, with URLs for its own objects only."""
    k8s = settings.kubernetes
    name = build_pod_name(request.build_id)
    env = _env(**request.to_env(grants, with_config=False))
    env.append({"name": BUILD_CONFIG_KEY, "valueFrom": {"secretKeyRef": {"name": name, "key": BUILD_CONFIG_KEY}}})
    container = _secured({
        "name": "slugbuilder",
        "image": k8s.slugbuilder_image,
        "command": ["teresa-slugbuilder"],
        "env": env,
        "resources": {"limits": {"cpu": k8s.build_limit_cpu, "memory": k8s.build_limit_memory}},
    }, k8s)
    # A backstop: the slugbuilder enforces TERESA_BUILD_TIMEOUT itself.
    spec = _deadline(base_pod_spec(k8s, "Never"), request.timeout_seconds + BUILD_DEADLINE_MARGIN)
    spec["containers"] = [container]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(name, request.app, _build_labels(settings, request)),
        "spec": spec,
    }
