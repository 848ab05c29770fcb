"""The rendered Deployment says what teresa.yaml and the settings asked for."""

from __future__ import annotations

import pytest

from controller.runtime.kubernetes import manifests
from controller.spec import Autoscale
from controller.teresa_yaml import parse
from tests.k8s import samples


def web_deployment(teresa_yaml: str = samples.FULL_TERESA_YAML, allow_priv: bool = False, **overrides) -> dict:
    return manifests.deployment(samples.settings(allow_priv), samples.release(teresa_yaml, **overrides), "web")


def main_container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_probes_match_teresa_yaml() -> None:
    spec = parse(samples.FULL_TERESA_YAML)
    container = main_container(web_deployment())
    for probe, rendered in ((spec.liveness, container["livenessProbe"]), (spec.readiness, container["readinessProbe"])):
        assert rendered == {
            "httpGet": {"path": probe.path, "port": "http"},
            "initialDelaySeconds": probe.initial_delay_seconds,
            "timeoutSeconds": probe.timeout_seconds,
            "periodSeconds": probe.period_seconds,
            "successThreshold": probe.success_threshold,
            "failureThreshold": probe.failure_threshold,
        }
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["successThreshold"] == 2
    # The probes reach the port the app listens on: the named port is PORT.
    assert container["ports"] == [{"name": "http", "containerPort": 5000, "protocol": "TCP"}]
    assert env_of(container)["PORT"] == "5000"


def test_without_health_checks_web_is_ready_once_it_accepts_connections_on_its_port() -> None:
    """No httpGet default: a k8s httpGet probe needs 200-399, and `/` of a working app may well answer 404."""
    deployment = web_deployment("")
    container = main_container(deployment)
    assert "livenessProbe" not in container
    assert container["readinessProbe"] == {"tcpSocket": {"port": "http"}, "periodSeconds": 2, "timeoutSeconds": 2,
                                           "failureThreshold": 3}
    assert deployment["spec"]["minReadySeconds"] == manifests.MIN_READY_SECONDS > 0


def test_only_web_gets_a_port_and_probes() -> None:
    worker = manifests.deployment(samples.settings(), samples.release(), "worker")
    container = main_container(worker)
    assert not {"ports", "livenessProbe", "readinessProbe"} & container.keys()


@pytest.mark.parametrize("teresa_yaml, surge, unavailable", [
    (samples.FULL_TERESA_YAML, 2, "10%"),
    (samples.PERCENT_TERESA_YAML, "50%", 0),
    ("", "25%", "25%"),
])
def test_strategy_matches_teresa_yaml(teresa_yaml: str, surge, unavailable) -> None:
    strategy = web_deployment(teresa_yaml)["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}


def test_revision_history_and_progress_deadline_come_from_settings() -> None:
    spec = web_deployment()["spec"]
    assert spec["revisionHistoryLimit"] == 7
    assert spec["progressDeadlineSeconds"] == 120
    defaults = manifests.deployment(samples.settings(TERESADEPLOY_REVISION_HISTORY_LIMIT=""), samples.release(), "web")
    assert defaults["spec"]["revisionHistoryLimit"] == 5


def test_drain_becomes_pre_stop_sleep_and_grace_period() -> None:
    deployment = web_deployment()
    container = main_container(deployment)
    assert container["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "20"]}}}
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 20
    no_drain = web_deployment(samples.PERCENT_TERESA_YAML)
    assert "lifecycle" not in main_container(no_drain)
    assert no_drain["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 0


def test_security_context_is_restricted_by_default() -> None:
    template = web_deployment()["spec"]["template"]["spec"]
    assert template["securityContext"]["runAsNonRoot"] is True
    assert template["securityContext"]["runAsUser"] == 2000
    assert template["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert template["automountServiceAccountToken"] is False
    for container in template["initContainers"] + template["containers"]:
        context = container["securityContext"]
        assert context["privileged"] is False
        assert context["allowPrivilegeEscalation"] is False
        assert context["runAsNonRoot"] is True
        assert isinstance(context["runAsUser"], int) and context["runAsUser"] > 0
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_allowing_privileged_containers_lifts_the_restrictions() -> None:
    template = web_deployment(allow_priv=True)["spec"]["template"]["spec"]
    assert "securityContext" not in template
    assert all("securityContext" not in c for c in template["initContainers"] + template["containers"])
    enforce = "pod-security.kubernetes.io/enforce"
    assert enforce not in manifests.namespace(samples.settings(True), "shop")["metadata"]["labels"]
    assert manifests.namespace(samples.settings(), "shop")["metadata"]["labels"][enforce] == "restricted"


def test_slug_is_fetched_by_an_init_container_into_an_empty_dir() -> None:
    template = web_deployment()["spec"]["template"]["spec"]
    (fetch,) = template["initContainers"]
    main = template["containers"][0]
    assert template["volumes"] == [{"name": "app", "emptyDir": {}}]
    assert fetch["command"] == ["teresa-slugrunner", "fetch"]
    (slug_url,) = [e for e in fetch["env"] if e["name"] == "TERESA_SLUG_URL"]
    assert slug_url["valueFrom"] == {"secretKeyRef": {"name": "slug-20261122-abc123", "key": "TERESA_SLUG_URL"}}
    assert "envFrom" not in fetch  # a presigned URL of this slug, no storage credentials
    assert main["command"] == ["teresa-slugrunner", "init", "--", "teresa-slugrunner", "start", "web"]
    assert main["image"] == fetch["image"] == "registry.example.net/teresa/stack:24-run"
    assert fetch["volumeMounts"] == main["volumeMounts"] == [{"name": "app", "mountPath": "/app"}]
    # The app gets its config vars, not the storage credentials; nothing tells it to fetch again.
    assert main["envFrom"] == [{"secretRef": {"name": samples.CONFIG_SECRET}}]
    assert "TERESA_SLUG_URL" not in env_of(main)


def test_release_version_replicas_limits_and_change_cause() -> None:
    deployment = web_deployment()
    assert deployment["metadata"]["annotations"]["kubernetes.io/change-cause"] == "v4: config"
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["metadata"]["labels"]["teresa.io/release"] == "v4"
    assert main_container(deployment)["resources"] == {"limits": {"cpu": "250m", "memory": "256Mi"}}
    # Selectors are immutable: they must not change from release to release.
    assert deployment["spec"]["selector"]["matchLabels"] == {"teresa.io/app": "shop", "teresa.io/process-type": "web"}


def test_process_types_without_formation_or_limits() -> None:
    mail = manifests.deployment(samples.settings(), samples.release(), "mail_sender")
    assert mail["metadata"]["name"] == "mail-sender"
    assert mail["spec"]["replicas"] == 0
    assert main_container(mail)["command"] == ["teresa-slugrunner", "init", "--", "teresa-slugrunner", "start", "mail_sender"]
    assert "resources" not in main_container(mail)  # the LimitRange supplies the defaults


@pytest.mark.parametrize("formation, expected", [(1, 2), (4, 4), (9, 6)])
def test_autoscaled_replicas_stay_within_bounds(formation: int, expected: int) -> None:
    release = samples.release(formation={"web": formation})
    deployment = manifests.deployment(samples.settings(), release, "web", samples.AUTOSCALE)
    assert deployment["spec"]["replicas"] == expected


def test_autoscaler_targets_the_deployment() -> None:
    autoscale = Autoscale(min_replicas=2, max_replicas=5, cpu_percent=60, process_type="worker")
    hpa = manifests.autoscaler(samples.release(), autoscale)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}
