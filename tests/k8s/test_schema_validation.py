"""Every object Teresa renders validates against the official Kubernetes schemas, strictly."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest

from controller.runtime.kubernetes import manifests
from tests.k8s import samples

VERSIONS = ("1.32", "1.37")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def everything(allow_priv: bool, teresa_yaml: str) -> list[dict]:
    settings = samples.settings(allow_priv=allow_priv)
    release = samples.release(teresa_yaml)
    if not teresa_yaml:  # no cron schedule: a Procfile without cron types
        release = samples.release(teresa_yaml, processes={k: v for k, v in samples.PROCFILE.items() if "cron" not in k})
    request = samples.build_request()
    return [
        *manifests.render_release(settings, release, samples.AUTOSCALE),
        manifests.build_secret(settings, request),
        manifests.slugbuilder_pod(settings, request, samples.GRANTS),
        manifests.release_pod(settings, release),
        manifests.run_pod(settings, release, ["python", "manage.py", "shell"], tty=True),
    ]


def pod_templates(obj: dict) -> list[dict]:
    spec = obj.get("spec", {})
    if "template" in spec:
        return [spec["template"]]
    if "jobTemplate" in spec:
        return [spec["jobTemplate"], spec["jobTemplate"]["spec"]["template"]]
    return []


def assert_names_and_labels_are_valid(obj: dict) -> None:
    """What the schemas leave to the API server: object names and label values."""
    name = obj["metadata"]["name"]
    assert len(name) <= 63 and DNS_SUBDOMAIN.match(name), f"{obj['kind']} name {name!r}"
    for meta in [obj["metadata"], *(t["metadata"] for t in pod_templates(obj))]:
        for key, value in meta["labels"].items():
            assert len(value) <= 63 and LABEL_VALUE.match(value), f"{obj['kind']}/{name} label {key}={value!r}"


def test_the_validator_is_strict() -> None:
    namespace = manifests.namespace(samples.settings(), "shop")
    namespace["metadata"]["colour"] = "blue"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(namespace, "1.37", strict=True)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("allow_priv", [False, True], ids=["restricted", "privileged-allowed"])
@pytest.mark.parametrize("teresa_yaml", [samples.FULL_TERESA_YAML, samples.PERCENT_TERESA_YAML, ""],
                         ids=["every-option", "percent-surge", "defaults"])
def test_every_rendered_object_validates(version: str, allow_priv: bool, teresa_yaml: str) -> None:
    objects = everything(allow_priv, teresa_yaml)
    kinds = {o["kind"] for o in objects}
    assert kinds == {"Namespace", "ServiceAccount", "LimitRange", "ResourceQuota", "NetworkPolicy", "Secret", "Deployment", "Service",
                     "Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Pod"} | ({"CronJob"} if teresa_yaml else set())
    for obj in objects:
        validated = kubernetes_validate.validate(obj, version, strict=True)
        assert validated == version, f"validated {obj['kind']} against {validated}, not {version}"
        assert_names_and_labels_are_valid(obj)


def test_rendered_objects_use_each_option() -> None:
    """The validation above is only as good as what it sees: the full release renders every feature."""
    objects = everything(False, samples.FULL_TERESA_YAML)
    by_kind: dict[str, list[dict]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    assert sorted(d["metadata"]["name"] for d in by_kind["Deployment"]) == ["mail-sender", "web", "worker"]
    assert sorted(c["metadata"]["name"] for c in by_kind["CronJob"]) == ["cron", "cron-report"]
    web = next(d for d in by_kind["Deployment"] if d["metadata"]["name"] == "web")
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert {"livenessProbe", "readinessProbe", "lifecycle", "resources", "ports"} <= container.keys()
    assert by_kind["Ingress"][0]["spec"]["ingressClassName"] == "nginx"
    assert len(by_kind["Ingress"][0]["spec"]["rules"]) == 3


@pytest.mark.parametrize("version", VERSIONS)
def test_tls_disruption_budget_and_pull_settings_validate(version: str) -> None:
    settings = samples.settings(TERESA_IMAGE_PULL_POLICY="IfNotPresent", TERESA_IMAGE_PULL_SECRETS="regcred",
                                TERESA_INGRESS_CLUSTER_ISSUER="letsencrypt")
    issued = samples.release(formation={"web": 3})
    own = samples.release(formation={"web": 3}, tls_secret="shop-example-com")
    objects = [*manifests.render_release(settings, issued), manifests.ingress(settings, own),
               manifests.run_pod(settings, issued, ["true"]), manifests.release_pod(settings, issued)]
    for obj in objects:
        assert kubernetes_validate.validate(obj, version, strict=True) == version
        assert_names_and_labels_are_valid(obj)
    budget = next(o for o in objects if o["kind"] == "PodDisruptionBudget")
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {"teresa.io/app": "shop",
                                                                                  "teresa.io/process-type": "web"}}}
    by_issuer, by_secret = [o for o in objects if o["kind"] == "Ingress"]
    assert by_issuer["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}
    assert by_issuer["spec"]["tls"] == [{"hosts": [r["host"] for r in by_issuer["spec"]["rules"]],
                                         "secretName": "shop-tls"}]
    assert "annotations" not in by_secret["metadata"]  # the app's own certificate: cert-manager keeps off it
    assert by_secret["spec"]["tls"][0]["secretName"] == "shop-example-com"
    pods = [o["spec"] for o in objects if o["kind"] == "Pod"]
    pods += [o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Deployment"]
    for spec in pods:
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]
        assert all(c["imagePullPolicy"] == "IfNotPresent" for c in spec["containers"] + spec.get("initContainers", []))
    assert [o["spec"]["activeDeadlineSeconds"] for o in objects if o["kind"] == "Pod"] == [3600, 15 * 60 + 60]


def test_one_web_replica_gets_no_disruption_budget() -> None:
    kinds = {o["kind"] for o in manifests.render_release(samples.settings(), samples.release(formation={"web": 1}))}
    assert "PodDisruptionBudget" not in kinds and "Ingress" in kinds
