"""Labels, secrets, networking, cron and one-off pods of a rendered release."""

from __future__ import annotations

import base64
import json

import pytest
import yaml

from controller.runtime.kubernetes import manifests
from controller.runtime.kubernetes.meta import ManifestError
from controller.spec import Autoscale
from tests.k8s import samples
from tests.k8s.test_schema_validation import everything, pod_templates


def by_name(objects: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def env_of(container: dict) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize("allow_priv", [False, True])
def test_every_object_and_pod_template_carries_the_teresa_labels(allow_priv: bool) -> None:
    for obj in everything(allow_priv, samples.FULL_TERESA_YAML):
        for meta in [obj["metadata"], *(t["metadata"] for t in pod_templates(obj))]:
            assert meta["labels"]["app.kubernetes.io/managed-by"] == "teresa", obj["kind"]
            assert meta["labels"]["teresa.io/app"] == "shop", obj["kind"]
        if obj["kind"] in ("Deployment", "CronJob"):
            assert obj["metadata"]["labels"]["teresa.io/release"] == "v4"
            assert pod_templates(obj)[-1]["metadata"]["labels"]["teresa.io/process-type"] in samples.PROCFILE


def test_objects_come_in_apply_order() -> None:
    objects = manifests.render_release(samples.settings(), samples.release(), samples.AUTOSCALE)
    kinds = [o["kind"] for o in objects]
    assert kinds[:3] == ["Namespace", "ServiceAccount", "LimitRange"]
    assert kinds.index("Secret") < kinds.index("Deployment") < kinds.index("Service") < kinds.index("Ingress")
    assert kinds[-1] == "HorizontalPodAutoscaler"
    assert all(o["metadata"]["namespace"] == "shop" for o in objects[1:])


def test_config_secret_holds_the_config_vars() -> None:
    secret = manifests.config_secret(samples.release())
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == samples.CONFIG
    assert secret["metadata"]["name"] == samples.CONFIG_SECRET


def test_yaml_dump_masks_every_secret_value() -> None:
    settings = samples.settings()
    objects = [*manifests.render_release(settings, samples.release(), samples.AUTOSCALE),
               manifests.build_secret(samples.settings(), samples.build_request())]
    dumped = manifests.to_yaml(objects)
    encoded = [base64.b64encode(v.encode()).decode() for v in (*samples.CONFIG.values(), samples.STORAGE_SECRET_VALUE)]
    for value in (*samples.CONFIG.values(), samples.STORAGE_SECRET_VALUE, samples.K8S_PASSWORD, *encoded):
        assert value not in dumped
    shown = list(yaml.safe_load_all(dumped))
    assert len(shown) == len(objects)
    assert set(by_name(shown, "Secret", samples.CONFIG_SECRET)["data"]) == set(samples.CONFIG)
    assert set(by_name(shown, "Secret", samples.CONFIG_SECRET)["data"].values()) == {manifests.MASK}
    # Masking copies: the objects to apply still hold the real values.
    assert base64.b64decode(by_name(objects, "Secret", samples.CONFIG_SECRET)["data"]["API_TOKEN"]).decode() == "tok-s3cr3t-value"
    unmasked = manifests.to_yaml(objects, mask=False)
    assert encoded[0] in unmasked


def test_web_service_and_ingress_for_every_domain() -> None:
    objects = manifests.render_release(samples.settings(), samples.release())
    service = by_name(objects, "Service", "web")
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"] == {"teresa.io/app": "shop", "teresa.io/process-type": "web"}
    ingress = by_name(objects, "Ingress", "web")
    assert [r["host"] for r in ingress["spec"]["rules"]] == [
        "shop.apps.example.net", "www.shop.example.com", "shop.example.org"]
    for rule in ingress["spec"]["rules"]:
        (path,) = rule["http"]["paths"]
        assert path["backend"] == {"service": {"name": "web", "port": {"number": 80}}}
    assert ingress["spec"]["ingressClassName"] == "nginx"
    default_class = manifests.ingress(samples.settings(TERESA_INGRESS_CLASS=""), samples.release(domains=()))
    assert "ingressClassName" not in default_class["spec"]
    assert [r["host"] for r in default_class["spec"]["rules"]] == ["shop.apps.example.net"]


def test_no_service_or_ingress_without_web() -> None:
    release = samples.release(processes={"worker": "celery worker"})
    kinds = [o["kind"] for o in manifests.render_release(samples.settings(), release)]
    assert "Service" not in kinds and "Ingress" not in kinds and kinds.count("Deployment") == 1


def test_cron_schedules_global_and_per_type() -> None:
    objects = manifests.render_release(samples.settings(), samples.release(formation={"cron_report": 0}))
    cron = by_name(objects, "CronJob", "cron")
    report = by_name(objects, "CronJob", "cron-report")
    assert cron["spec"]["schedule"] == "*/5 * * * *"
    assert report["spec"]["schedule"] == "0 3 * * *"
    assert cron["spec"]["suspend"] is False and report["spec"]["suspend"] is True
    pod = report["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["command"] == ["teresa-slugrunner", "init", "--", "teresa-slugrunner", "start", "cron_report"]
    assert "lifecycle" not in pod["containers"][0]  # no drain for a scheduled run
    assert not any(o["kind"] == "Deployment" and o["metadata"]["name"].startswith("cron") for o in objects)


def test_a_cron_type_without_a_schedule_is_a_clear_error() -> None:
    with pytest.raises(ManifestError, match=r"'cron_report'.*add cron.schedule or cron.cron_report.schedule"):
        manifests.render_release(samples.settings(), samples.release("", processes={"cron_report": "x"}))


def test_process_types_that_collide_or_cannot_be_named() -> None:
    with pytest.raises(ManifestError, match="both become the Kubernetes name 'mail-sender'"):
        manifests.render_release(samples.settings(), samples.release("", processes={"mail_sender": "a", "mail-sender": "b"}))
    with pytest.raises(ManifestError, match="'9lives' cannot name a Kubernetes object"):
        manifests.render_release(samples.settings(), samples.release("", processes={"9lives": "a"}))


def test_autoscale_needs_a_long_running_type() -> None:
    with pytest.raises(ManifestError, match="no long-running process type 'cron'"):
        manifests.autoscaler(samples.release(), Autoscale(1, 2, 50, process_type="cron"))


@pytest.mark.parametrize("args, message", [
    ((0, 2, 50), "--min 0 is too small"),
    ((3, 2, 50), "--max 2 is below --min 3"),
    ((1, 2, 0), "--cpu 0 is not a target CPU percentage"),
])
def test_autoscale_rejects_bad_bounds(args: tuple[int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Autoscale(*args)


def test_slugbuilder_pod_follows_the_builder_contract() -> None:
    request = samples.build_request()
    pod = manifests.slugbuilder_pod(samples.settings(), request, samples.GRANTS)
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] > request.timeout_seconds
    assert container["image"] == "registry.example.net/teresa/stack:24"
    assert container["command"] == ["teresa-slugbuilder"]
    assert container["resources"] == {"limits": {"cpu": "2", "memory": "2Gi"}}
    env = env_of(container)
    assert env["TERESA_SOURCE_URL"] == samples.GRANTS.source
    assert env["TERESA_SLUG_UPLOAD_URL"] == samples.GRANTS.slug
    assert env["TERESA_PROCFILE_UPLOAD_URL"] == samples.GRANTS.procfile
    assert env["TERESA_CACHE_URL"] == samples.GRANTS.cache
    assert env["TERESA_CACHE_UPLOAD_URL"] == samples.GRANTS.cache_upload
    assert env["BUILDPACK_URL"] == request.buildpack_url
    assert env["TERESA_BUILD_TIMEOUT"] == "600"
    name = pod["metadata"]["name"]
    assert env["TERESA_BUILD_CONFIG"] == {"secretKeyRef": {"name": name, "key": "TERESA_BUILD_CONFIG"}}
    build_secret = manifests.build_secret(samples.settings(), request)
    assert build_secret["metadata"]["name"] == name
    # The replica that runs the build deletes it, or (crashed) its successor: upkeep.py removes orphans by this.
    assert pod["metadata"]["labels"]["teresa.io/owner"] == build_secret["metadata"]["labels"]["teresa.io/owner"]
    assert json.loads(base64.b64decode(build_secret["data"]["TERESA_BUILD_CONFIG"])) == samples.CONFIG
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_no_build_pod_or_app_object_carries_storage_credentials() -> None:
    """Issue 12: a build read the bucket's keys from its environment; now it gets URLs for its own objects."""
    settings, release, request = samples.settings(), samples.release(), samples.build_request()
    objects = [*manifests.render_release(settings, release, samples.AUTOSCALE, "https://s3.example.net/x?sig"),
               manifests.build_secret(settings, request), manifests.slugbuilder_pod(settings, request, samples.GRANTS),
               manifests.release_pod(settings, release), manifests.run_pod(settings, release, ["sh"])]
    dumped = manifests.to_yaml(objects, mask=False)
    for credential in (samples.STORAGE_SECRET_VALUE, "AKIAEXAMPLE", "TERESAFILESTORAGE", "teresa-storage"):
        assert credential not in dumped
        assert base64.b64encode(credential.encode()).decode() not in dumped
    assert "envFrom" not in manifests.slugbuilder_pod(settings, request, samples.GRANTS)["spec"]["containers"][0]


def test_slug_secret_holds_the_presigned_url_the_fetch_container_reads() -> None:
    settings, release = samples.settings(), samples.release()
    objects = manifests.render_release(settings, release, None, "https://s3.example.net/slug?sig")
    (slug,) = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].startswith("slug-")]
    assert base64.b64decode(slug["data"]["TERESA_SLUG_URL"]).decode() == "https://s3.example.net/slug?sig"
    (fetch,) = manifests.deployment(settings, release, "web")["spec"]["template"]["spec"]["initContainers"]
    assert env_of(fetch)["TERESA_SLUG_URL"] == {"secretKeyRef": {"name": slug["metadata"]["name"],
                                                                "key": "TERESA_SLUG_URL"}}


def test_network_policy_and_quota_of_each_app_namespace() -> None:
    settings = samples.settings(TERESA_APP_QUOTA_CPU="8", TERESA_APP_QUOTA_MEMORY="16Gi", TERESA_APP_QUOTA_PODS="30",
                                TERESA_NAMESPACE="paas", TERESA_CLUSTER_CIDRS="10.244.0.0/16,fd00::/48")
    objects = {o["kind"]: o for o in manifests.app_objects(settings, "shop")}
    assert objects["ResourceQuota"]["spec"] == {"hard": {"limits.cpu": "8", "limits.memory": "16Gi", "pods": "30"}}
    policy = objects["NetworkPolicy"]["spec"]
    assert policy["podSelector"] == {} and policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert {"podSelector": {}} in ingress["from"]
    assert {"namespaceSelector": {"matchExpressions": [
        {"key": "app.kubernetes.io/managed-by", "operator": "NotIn", "values": ["teresa"]}]}} in ingress["from"]
    (egress,) = policy["egress"]
    assert {"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["paas"]}]}} in egress["to"]
    assert {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32", "10.244.0.0/16"]}} in egress["to"]
    assert {"ipBlock": {"cidr": "::/0", "except": ["fd00::/48"]}} in egress["to"]
    assert {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.244.0.0/16"]}} in ingress["from"]


def test_release_and_run_pods() -> None:
    settings, release = samples.settings(), samples.release()
    phase = manifests.release_pod(settings, release)
    assert phase["metadata"]["name"] == "release-v4"
    assert phase["spec"]["restartPolicy"] == "Never"
    assert phase["spec"]["containers"][0]["command"] == ["teresa-slugrunner", "init", "--", "teresa-slugrunner", "start", "release"]
    run = manifests.run_pod(settings, release, ["rake", "db:seed"], name="run-1a2b")
    assert run["spec"]["containers"][0]["command"] == ["teresa-slugrunner", "init", "--", "teresa-slugrunner", "exec", "--", "rake", "db:seed"]
    # stdin open for the one attach that forwards the client's (see attach.py); a terminal only when asked
    assert {k: run["spec"]["containers"][0][k] for k in ("stdin", "stdinOnce", "tty")} == \
        {"stdin": True, "stdinOnce": True, "tty": False}
    assert manifests.run_pod(settings, release, ["sh"], tty=True)["spec"]["containers"][0]["tty"] is True
    # No Deployment may adopt a one-off pod: it has no process-type label.
    assert "teresa.io/process-type" not in run["metadata"]["labels"]
    names = {manifests.run_pod(settings, release, ["x"])["metadata"]["name"] for _ in range(2)}
    assert len(names) == 2
    with pytest.raises(ManifestError, match="no release process type"):
        manifests.release_pod(settings, samples.release(processes={"web": "x"}))
    with pytest.raises(ManifestError, match="needs a command"):
        manifests.run_pod(settings, release, [])
